#!/usr/bin/env bash
# `make demo`: the whole chain of trust on one machine, no cluster, nothing from the internet.
#
#   registry (Debian's docker-registry) --push notification--> signet signer --signature--> registry
#   AdmissionReview --> signet webhook --signature lookup--> registry --> allowed / denied, with the reason
#
# 1. a release key (signet keygen) and a policy folder: an Attestor with that key, a Namespace `demo`, a
#    ClusterVerificationPolicy requiring the key for REGISTRY/demo/**, a SigningRule signing pushes to
#    REGISTRY/demo/signed/**;
# 2. signet signer on a loopback port, and a registry whose notifications go to it;
# 3. two tiny images pushed: demo/signed/app:v1 (the signer signs it) and demo/unsigned/app:v1 (no rule);
# 4. signet webhook on the same folder, sent one Pod per image: one allowed, one denied, printed with why.
#
# The signet binary: $SIGNET_BIN, else the release build, else the debug build (built when neither
# exists). Everything runs in a temporary folder, removed at the end, with every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
signet=${SIGNET_BIN:-}
if [ -z "$signet" ]; then
  for candidate in "$target/release/signet" "$target/debug/signet"; do
    [ -x "$candidate" ] && { signet=$candidate; break; }
  done
fi
if [ -z "$signet" ]; then
  cargo build --quiet
  signet=$target/debug/signet
fi
registry_bin=/usr/bin/docker-registry
[ -x "$registry_bin" ] || { echo "demo: $registry_bin not found: install the Debian package docker-registry" >&2; exit 1; }
command -v python3 >/dev/null || { echo "demo: python3 not found: install the Debian package python3" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for URL WHAT LOG: until URL answers 200 (HTTPS without verification: the webhook's self-signed
# certificate), at most 30 s.
wait_for() {
  python3 - "$1" <<'PY' || { echo "demo: $2 did not start; its log:" >&2; tail -n 20 "$3" >&2; exit 1; }
import ssl, sys, time, urllib.request
context = ssl._create_unverified_context()
for _ in range(300):
    try:
        if urllib.request.urlopen(sys.argv[1], timeout=1, context=context).status == 200:
            sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
PY
}

registry_port=$(free_port)
signer_port=$(free_port)
webhook_port=$(free_port)
registry=127.0.0.1:$registry_port
echo "== signet demo ($signet), working in $work"

# 1. Key and policies.
"$signet" keygen --algorithm ECDSA_P256_SHA_256 --output "$work/release" >/dev/null
mkdir "$work/policies"
{
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels:
    env: demo
---
apiVersion: signet.dev/v1alpha1
kind: Attestor
metadata:
  name: release
spec:
  description: the demo's release key
  keys:
  - id: release-demo
    algorithm: ECDSA_P256_SHA_256
    publicKey: |
EOF
  sed 's/^/      /' "$work/release.pub"
  cat <<EOF
---
apiVersion: signet.dev/v1alpha1
kind: ClusterVerificationPolicy
metadata:
  name: demo-images-are-release-signed
spec:
  namespaceSelector:
    matchLabels:
      env: demo
  images: ["$registry/demo/**"]
  attestors: [release]
  mode: Enforce
---
apiVersion: signet.dev/v1alpha1
kind: SigningRule
metadata:
  name: sign-demo-pushes
spec:
  scope: ["$registry/demo/signed/**"]
  key:
    ref: file:$work/release.key
    id: release-demo
  algorithm: ECDSA_P256_SHA_256
  trigger: Automatic
EOF
} > "$work/policies/demo.yaml"
echo "1. key $work/release.pub; policies: every image under $registry/demo/ in namespace demo must be signed by it"

# 2. The signer, and a registry that notifies it.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
"$signet" --log warn signer --plain-http --listen "127.0.0.1:$signer_port" --token-file "$work/token" \
  --policy-dir "$work/policies" --shutdown-delay 0s > "$work/signer.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$signer_port/readyz" "signet signer" "$work/signer.log"
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $registry
  secret: signet-demo
notifications:
  endpoints:
    - name: signet
      url: http://127.0.0.1:$signer_port/events
      headers:
        Authorization: ["Bearer $(cat "$work/token")"]
      timeout: 2s
      threshold: 3
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
      ignore:
        actions: [pull]
EOF
"$registry_bin" serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
pids+=($!)
wait_for "http://$registry/v2/" "docker-registry" "$work/registry.log"
echo "2. registry on $registry notifies signet signer on 127.0.0.1:$signer_port"

# 3. Two images.
for name in signed unsigned; do
  python3 scripts/image.py tiny --layout "$work/$name" --text "hello from the $name image" >/dev/null
  python3 scripts/image.py push --layout "$work/$name" --to "$registry/demo/$name/app:v1" >/dev/null
done
echo "3. pushed $registry/demo/signed/app:v1 and $registry/demo/unsigned/app:v1"
for _ in $(seq 1 100); do
  if "$signet" verify "$registry/demo/signed/app:v1" --key "$work/release.pub" \
      --algorithm ECDSA_P256_SHA_256 >/dev/null 2>&1; then
    signed=yes
    break
  fi
  sleep 0.2
done
if [ "${signed:-}" != yes ]; then
  echo "demo: the signer did not sign $registry/demo/signed/app:v1 within 20 s; its log:" >&2
  tail -n 20 "$work/signer.log" >&2
  exit 1
fi
echo "   the signer signed $registry/demo/signed/app:v1 on push; demo/unsigned/ has no SigningRule"

# 4. The webhook, and one Pod per image.
"$signet" --log warn webhook --tls-self-signed --listen "127.0.0.1:$webhook_port" \
  --policy-dir "$work/policies" --shutdown-delay 0s > "$work/webhook.log" 2>&1 &
pids+=($!)
wait_for "https://127.0.0.1:$webhook_port/readyz" "signet webhook" "$work/webhook.log"
echo "4. signet webhook on https://127.0.0.1:$webhook_port; admission of a Pod in namespace demo running:"
python3 - "https://127.0.0.1:$webhook_port/validate" "$registry/demo/signed/app:v1" \
  "$registry/demo/unsigned/app:v1" <<'PY'
import json, ssl, sys, urllib.request, uuid
url, images = sys.argv[1], sys.argv[2:]
context = ssl._create_unverified_context()  # the webhook's self-signed certificate
for image in images:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "app", "namespace": "demo"},
           "spec": {"containers": [{"name": "app", "image": image}]}}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "resource": {"group": "", "version": "v1", "resource": "pods"},
                          "namespace": "demo", "name": "app", "operation": "CREATE",
                          "userInfo": {"username": "demo"}, "object": pod, "dryRun": False}}
    request = urllib.request.Request(url, json.dumps(review).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:
        response = json.load(answer)["response"]
    if response["allowed"]:
        why = "; ".join(f"{k}={v}" for k, v in sorted(response.get("auditAnnotations", {}).items()))
        print(f"   ALLOWED {image}: {why}")
    else:
        print(f"   DENIED  {image}: {response['status']['message']}")
PY
echo "   the same judgement from the command line (signet verify --policy-dir, exit 1 when one is denied):"
"$signet" verify "$registry/demo/signed/app:v1" "$registry/demo/unsigned/app:v1" \
  --policy-dir "$work/policies" --namespace demo 2>&1 | sed 's/^/   /' || true
