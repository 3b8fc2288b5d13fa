#!/usr/bin/env bash
# Times `signet verify`:
#   1. its own start-up before the first registry request: a loopback listener records when the
#      first connection arrives after the process was spawned (median and p90 of N runs), next to
#      the whole run of `signet --version` (exec + dynamic linking + clap) as the floor;
#   2. 100 signed images in a local docker-registry: one process per image vs one call for all.
# Usage: scripts/verify-bench.sh [path/to/signet]   (default target/release/signet)
# Needs: Debian docker-registry, python3. Prints the figures README.md's table records.
set -euo pipefail
cd "$(dirname "$0")/.."
SIGNET=${1:-${CARGO_TARGET_DIR:-target}/release/signet}
SIGNET=$(realpath "$SIGNET")
IMAGES=${IMAGES:-100}
RUNS=${RUNS:-50}
[ -x /usr/bin/docker-registry ] || { echo "install the Debian package docker-registry" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill "${registry_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat > "$work/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $host
  secret: bench
YAML
/usr/bin/docker-registry serve "$work/config.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fs "http://$host/v2/" > /dev/null && break
  sleep 0.1
done

"$SIGNET" keygen --algorithm ECDSA_P256_SHA_256 --output "$work/bench" > /dev/null

# Push $IMAGES tiny distinct OCI images (one config blob each, no layers).
python3 - "$host" "$IMAGES" <<'PY'
import hashlib, json, sys, urllib.request
host, count = sys.argv[1], int(sys.argv[2])
def req(method, url, data=None, headers={}):
    r = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(r)
for i in range(count):
    repo = f"bench/app{i}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "bench": i}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    loc = req("POST", f"http://{host}/v2/{repo}/blobs/uploads/").headers["Location"]
    sep = "&" if "?" in loc else "?"
    url = loc if loc.startswith("http") else f"http://{host}{loc}"
    req("PUT", f"{url}{sep}digest={digest}", config, {"Content-Type": "application/octet-stream"})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(config)},
        "layers": []}).encode()
    req("PUT", f"http://{host}/v2/{repo}/manifests/v1", manifest,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
PY
images=()
for i in $(seq 0 $((IMAGES - 1))); do images+=("$host/bench/app$i:v1"); done
for image in "${images[@]}"; do
  "$SIGNET" sign "$image" --key "file:$work/bench.key" --algorithm ECDSA_P256_SHA_256 > /dev/null
done
verify=(verify --key "$work/bench.pub" --algorithm ECDSA_P256_SHA_256)

# 1. Start-up before the first registry request.
python3 - "$SIGNET" "$RUNS" "$work/bench.pub" <<'PY'
import socket, statistics, subprocess, sys, time
signet, runs, public = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def spawn_to_first_connection():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
    port = s.getsockname()[1]
    t0 = time.perf_counter()
    p = subprocess.Popen([signet, "verify", f"127.0.0.1:{port}/a/b:v1", "--key", public,
        "--algorithm", "ECDSA_P256_SHA_256", "--registry-timeout", "1s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c, _ = s.accept()
    t1 = time.perf_counter()
    c.close(); s.close(); p.wait()
    return (t1 - t0) * 1000
def whole(args):
    t0 = time.perf_counter()
    subprocess.run([signet] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000
def show(name, xs):
    xs = sorted(xs)
    print(f"{name}: median {statistics.median(xs):.2f} ms, p90 {xs[int(len(xs) * 0.9)]:.2f} ms ({len(xs)} runs)")
show("spawn -> first registry connection (signet verify)", [spawn_to_first_connection() for _ in range(runs)])
show("whole run of signet --version (floor: exec, linking, clap)", [whole(["--version"]) for _ in range(runs)])
PY

# 2. 100 images: one process each vs one call.
t0=$(date +%s%N)
for image in "${images[@]}"; do "$SIGNET" "${verify[@]}" "$image" > /dev/null; done
t1=$(date +%s%N)
"$SIGNET" "${verify[@]}" "${images[@]}" > "$work/one-call.txt"
t2=$(date +%s%N)
verified=$(grep -c '^verified: ' "$work/one-call.txt")
echo "verify $IMAGES images, one process per image: $(( (t1 - t0) / 1000000 )) ms"
echo "verify $IMAGES images, one call:               $(( (t2 - t1) / 1000000 )) ms ($verified verified)"

# 3. The same 100 images, cold, in one admission: a Pod of $IMAGES containers sent to the webhook.
mkdir -p "$work/policies"
python3 - "$work" "$host" "${images[@]}" <<'PY'
import json, sys
work, host, images = sys.argv[1], sys.argv[2], sys.argv[3:]
key = "".join("      " + l + "\n" for l in open(f"{work}/bench.pub").read().splitlines())
open(f"{work}/policies/bench.yaml", "w").write(
    "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: bench}\nspec:\n  keys:\n"
    "  - algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n" + key +
    "---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata: {name: bench}\n"
    f"spec:\n  images: [\"{host}/bench/**\"]\n  attestors: [bench]\n")
review = json.load(open("tests/fixtures/admission/pod-create.json"))
spec = review["request"]["object"]["spec"]
spec["containers"] = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
spec.pop("initContainers", None)
json.dump(review, open(f"{work}/review.json", "w"))
PY
hook_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SIGNET" --log error webhook --tls-self-signed --listen "127.0.0.1:$hook_port" \
  --policy-dir "$work/policies" --deadline 30s > "$work/webhook.log" 2>&1 &
webhook_pid=$!
trap 'kill "${registry_pid:-0}" "${webhook_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -fsk "https://127.0.0.1:$hook_port/readyz" > /dev/null && break
  sleep 0.1
done
t0=$(date +%s%N)
answer=$(curl -sk -X POST -H 'Content-Type: application/json' --data-binary @"$work/review.json" \
  "https://127.0.0.1:$hook_port/validate")
t1=$(date +%s%N)
case "$answer" in *'"allowed":true'*) ok=allowed ;; *) ok="NOT allowed: ${answer:0:300}" ;; esac
echo "webhook: one cold admission of a Pod of $IMAGES images: $(( (t1 - t0) / 1000000 )) ms ($ok)"
