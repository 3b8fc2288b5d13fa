"""Prepares a moto server for the AWS KMS tests: an IAM user whose access key the tests sign
with (moto checks every SigV4 signature with botocore once its first unauthenticated actions
are used up), and keys: RSA-2048 and ECC_NIST_P256 SIGN_VERIFY, RSA-2048 ENCRYPT_DECRYPT, each
with an alias. Prints one JSON document."""
import json
import sys

import boto3

url = sys.argv[1]
common = dict(endpoint_url=url, region_name="us-east-1")
# The first three requests (the IAM setup) are the ones moto lets through unauthenticated.
iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **common)
iam.create_user(UserName="signer")
key = iam.create_access_key(UserName="signer")["AccessKey"]
iam.put_user_policy(
    UserName="signer",
    PolicyName="kms",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kms:*", "iam:*", "sts:AssumeRole"], "Resource": "*"}]}
    ),
)
kms = boto3.client(
    "kms", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], **common
)
# Two instance roles for the metadata test: it hands out sessions of each and takes the first
# role's permissions away.
signed_iam = boto3.client(
    "iam", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], **common
)
for role in ["signet-node-a", "signet-node-b"]:
    signed_iam.create_role(
        RoleName=role,
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/signer"}, "Action": "sts:AssumeRole"}]}
        ),
    )
    signed_iam.put_role_policy(
        RoleName=role,
        PolicyName="kms",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kms:*"], "Resource": "*"}]}
        ),
    )
keys = {}
for name, spec, usage in [
    ("rsa", "RSA_2048", "SIGN_VERIFY"),
    ("ec", "ECC_NIST_P256", "SIGN_VERIFY"),
    ("encrypt", "RSA_2048", "ENCRYPT_DECRYPT"),
]:
    key_id = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/{name}", TargetKeyId=key_id)
    keys[name] = key_id
print(json.dumps({"access_key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"], "keys": keys}))
