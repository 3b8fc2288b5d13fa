"""A local Alibaba Cloud KMS endpoint for signet's tests (no emulator of Alibaba Cloud KMS exists).

It implements the KMS API (version 2016-01-20) actions signet calls, DescribeKey, ListKeyVersions,
GetPublicKey and AsymmetricSign, over real keys made at start with `cryptography`, and STS's
AssumeRoleWithOIDC (for RRSA; the tests also use its temporary credentials as an ECS RAM role's,
and revoke them with the test-only action TestRevokeCredentials). Every KMS request's ACS3-HMAC-SHA256 signature is recomputed with
the official Alibaba Cloud Python SDK's own signing code (PyPI `alibabacloud-openapi-util`,
`Client.get_authorization`) and must match the request's Authorization header exactly, so
signet's request signing is checked by an independent implementation. It also checks what the
service checks around the signature: the payload hash, the signed header set, the date (15
minutes) and that no nonce is used twice.

Usage: alikms_server.py ACCESS_KEY_ID SECRET OIDC_TOKEN. It listens on a free loopback port and
prints the port on its first line of standard output.

Keys (region-agnostic):
  key-rsa   RSA_2048 SIGN/VERIFY, one version, primary v-rsa-1
  key-ec    EC_P256  SIGN/VERIFY, one version, no primary version (ListKeyVersions finds it)
  key-enc   RSA_2048 ENCRYPT/DECRYPT
  key-two   EC_P256  SIGN/VERIFY, two versions, no primary (a reference must name one)
  key-liar  EC_P256  SIGN/VERIFY whose AsymmetricSign uses another private key than GetPublicKey shows
  key-busy  EC_P256  SIGN/VERIFY whose first two AsymmetricSign calls are throttled
"""
import base64
import datetime
import hashlib
import json
import os
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alibabacloud_openapi_util.client import Client as OpenApiUtil
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

ACCESS_KEY_ID, SECRET, OIDC_TOKEN = sys.argv[1], sys.argv[2], sys.argv[3]
ROLE_ARN = "acs:ram::1234567890:role/signet-signer"
OIDC_PROVIDER_ARN = "acs:ram::1234567890:oidc-provider/ack-rrsa-test"
REQUIRED_SIGNED = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}

lock = threading.Lock()
nonces = set()
# Temporary credentials handed out by AssumeRoleWithOIDC: access key id -> (secret, token).
sts_credentials = {}
busy_calls = [0]


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def key(spec, usage, versions, primary=None, liar=False, busy=False):
    made = {v: (rsa_key() if spec.startswith("RSA") else ec_key()) for v in versions}
    return {
        "spec": spec,
        "usage": usage,
        "versions": made,
        "primary": primary,
        "signer": {v: (ec_key() if liar else k) for v, k in made.items()},
        "busy": busy,
    }


KEYS = {
    "key-rsa": key("RSA_2048", "SIGN/VERIFY", ["v-rsa-1"], primary="v-rsa-1"),
    "key-ec": key("EC_P256", "SIGN/VERIFY", ["v-ec-1"]),
    "key-enc": key("RSA_2048", "ENCRYPT/DECRYPT", ["v-enc-1"], primary="v-enc-1"),
    "key-two": key("EC_P256", "SIGN/VERIFY", ["v-two-1", "v-two-2"]),
    "key-liar": key("EC_P256", "SIGN/VERIFY", ["v-liar-1"], primary="v-liar-1", liar=True),
    "key-busy": key("EC_P256", "SIGN/VERIFY", ["v-busy-1"], primary="v-busy-1", busy=True),
}
ALGORITHMS = {"RSA_2048": {"RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"}, "EC_P256": {"ECDSA_SHA_256"}}


class Refused(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_signature(handler, path, query, body):
    headers = {k.lower(): v for k, v in handler.headers.items()}
    auth = headers.get("authorization", "")
    if not auth.startswith("ACS3-HMAC-SHA256 "):
        raise Refused(400, "IncompleteSignature", "the request is not signed with ACS3-HMAC-SHA256")
    fields = dict(part.split("=", 1) for part in auth[len("ACS3-HMAC-SHA256 "):].split(","))
    access_key_id = fields.get("Credential", "")
    signed = fields.get("SignedHeaders", "").split(";")
    missing = (REQUIRED_SIGNED | ({"x-acs-security-token"} if "x-acs-security-token" in headers else set())) - set(signed)
    if missing:
        raise Refused(400, "IncompleteSignature", f"headers not signed: {sorted(missing)}")
    if headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest():
        raise Refused(400, "IncompleteSignature", "x-acs-content-sha256 is not the hash of the body")
    when = datetime.datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 900:
        raise Refused(400, "InvalidTimeStamp.Expired", "x-acs-date is more than 15 minutes off")
    if access_key_id == ACCESS_KEY_ID:
        secret, token = SECRET, None
    elif access_key_id in sts_credentials:
        secret, token = sts_credentials[access_key_id]
    else:
        raise Refused(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if token is not None and headers.get("x-acs-security-token") != token:
        raise Refused(400, "InvalidSecurityToken.Mismatch", "the security token does not match the access key")
    request = type("TeaRequest", (), {})()
    request.method = handler.command
    request.pathname = path
    request.query = query
    request.headers = {name: headers.get(name, "") for name in signed}
    expected = OpenApiUtil.get_authorization(request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], access_key_id, secret)
    if expected != auth:
        raise Refused(400, "SignatureDoesNotMatch", "The request signature does not conform to Aliyun standards.")
    with lock:
        nonce = headers["x-acs-signature-nonce"]
        if nonce in nonces:
            raise Refused(400, "SignatureNonceUsed", "The request signature nonce has been used.")
        nonces.add(nonce)


def find_key(query):
    key_id = query.get("KeyId", "")
    if key_id not in KEYS:
        raise Refused(404, "Forbidden.KeyNotFound", f"The specified Key {key_id} is not found.")
    return key_id, KEYS[key_id]


def version_of(query, k):
    version = query.get("KeyVersionId", "")
    if version not in k["versions"]:
        raise Refused(404, "Forbidden.KeyVersionNotFound", f"The specified key version {version} is not found.")
    return version


def act(action, query):
    if action == "DescribeKey":
        key_id, k = find_key(query)
        meta = {"KeyId": key_id, "KeyUsage": k["usage"], "KeySpec": k["spec"], "KeyState": "Enabled"}
        if k["primary"]:
            meta["PrimaryKeyVersion"] = k["primary"]
        return {"KeyMetadata": meta}
    if action == "ListKeyVersions":
        key_id, k = find_key(query)
        return {"KeyVersions": {"KeyVersion": [{"KeyId": key_id, "KeyVersionId": v} for v in k["versions"]]}, "TotalCount": len(k["versions"])}
    if action == "GetPublicKey":
        key_id, k = find_key(query)
        version = version_of(query, k)
        pem = k["versions"][version].public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"KeyId": key_id, "KeyVersionId": version, "PublicKey": pem.decode()}
    if action == "AsymmetricSign":
        key_id, k = find_key(query)
        version = version_of(query, k)
        if k["usage"] != "SIGN/VERIFY":
            raise Refused(400, "Rejected.KeyUsage", "The key usage does not allow signing.")
        algorithm = query.get("Algorithm", "")
        if algorithm not in ALGORITHMS[k["spec"]]:
            raise Refused(400, "InvalidParameter.Algorithm", f"{algorithm} is not valid for {k['spec']}")
        if k["busy"]:
            with lock:
                busy_calls[0] += 1
                if busy_calls[0] <= 2:
                    raise Refused(400, "Throttling.User", "Request was denied due to user flow control.")
        digest = base64.b64decode(query.get("Digest", ""))
        if len(digest) != 32:
            raise Refused(400, "InvalidParameter.Digest", "the digest is not 32 bytes")
        private = k["signer"][version]
        prehashed = utils.Prehashed(hashes.SHA256())
        if algorithm == "RSA_PSS_SHA_256":
            value = private.sign(digest, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), prehashed)
        elif algorithm == "RSA_PKCS1_SHA_256":
            value = private.sign(digest, padding.PKCS1v15(), prehashed)
        else:
            value = private.sign(digest, ec.ECDSA(prehashed))
        return {"KeyId": key_id, "KeyVersionId": version, "Value": base64.b64encode(value).decode()}
    raise Refused(400, "InvalidAction.NotFound", f"action {action} is not served here")


def assume_role_with_oidc(form):
    if form.get("Action") == "TestRevokeCredentials":
        # Test-only (no such STS action): temporary credentials stop working, as when they
        # expire, so a test can show that a signer uses the ones it was handed next.
        with lock:
            sts_credentials.pop(form.get("AccessKeyId"), None)
        return {"RequestId": secrets.token_hex(8)}
    if form.get("Action") != "AssumeRoleWithOIDC":
        raise Refused(400, "InvalidAction.NotFound", "only AssumeRoleWithOIDC is served")
    if form.get("OIDCToken") != OIDC_TOKEN:
        raise Refused(400, "InvalidParameter.OIDCToken", "the OIDC token is not valid")
    if form.get("RoleArn") != ROLE_ARN or form.get("OIDCProviderArn") != OIDC_PROVIDER_ARN:
        raise Refused(404, "EntityNotExist.Role", "the role or OIDC provider does not exist")
    access_key_id = "STS." + secrets.token_hex(8)
    secret, token = secrets.token_hex(16), secrets.token_hex(24)
    with lock:
        sts_credentials[access_key_id] = (secret, token)
    expiration = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"RequestId": secrets.token_hex(8), "Credentials": {"AccessKeyId": access_key_id, "AccessKeySecret": secret, "SecurityToken": token, "Expiration": expiration}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("alikms: " + (fmt % args) + "\n")

    def answer(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, raw_query = self.path.partition("?")
        query = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        try:
            if self.headers.get("x-acs-action") is None:
                form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
                self.answer(200, assume_role_with_oidc(form))
                return
            check_signature(self, path, query, body)
            if self.headers.get("x-acs-version") != "2016-01-20":
                raise Refused(400, "InvalidVersion", "KMS API version 2016-01-20 expected")
            document = act(self.headers["x-acs-action"], query)
            document["RequestId"] = secrets.token_hex(8)
            self.answer(200, document)
        except Refused as e:
            self.log_message("refused %s: %s %s", self.headers.get("x-acs-action"), e.code, e.message)
            self.answer(e.status, {"RequestId": secrets.token_hex(8), "Code": e.code, "Message": e.message})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
