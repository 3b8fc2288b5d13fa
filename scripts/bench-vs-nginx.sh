#!/usr/bin/env bash
# Cached admissions, side by side with a static yardstick: `signet webhook` answering a 3-image Pod
# review whose verdicts are cached, and nginx-light answering the same POST with signet's own answer
# as a static body. Both over TLS on loopback, same certificate, same load generator (oha), same run.
# The webhook logs at `info`, as the chart runs it (until `1f16844` the script ran it at `warn`,
# which spared it the per-request span that `info` then cost: about 5,000 instructions).
#
#   scripts/bench-vs-nginx.sh [SECONDS]        # default 10 s per measurement
#
# A third server, `examples/edge_floor.rs`, is signet's serving edge alone (the same rustls and
# hyper-util serving, one runtime per core) answering the same static body: what the HTTP and TLS stack costs before
# any admission work.
#
# Prints, for HTTP/1.1 and HTTP/2: the maximum rate (50 connections, closed loop) of each server and
# the ratios to nginx, then p50/p99 latency at a fixed 5,000 req/s (after a warm-up of WARMUP
# seconds, default 1, which leaves out the run's TLS handshakes; p99_all is that of every request).
# ROUNDS=N (default 1) measures each figure N times, the three servers in turn, and prints the medians (WEBHOOK_ARGS adds flags to the
# webhook's command line, e.g. WEBHOOK_ARGS="--signature-cache-ttl 1h"): nginx's own figures move by
# 20-50% from one run to the next on a shared 2-core machine, so a `paired` line also gives, per
# protocol, the median of the ratios signet / nginx and edge / nginx taken within each round (each
# round's in brackets): the rate's at the maximum rate, the p99's at the fixed one. Each figure carries the share of CPU
# time the hypervisor stole during its runs; MAX_STEAL=P counts only the rounds in which no run had
# more than P percent stolen (see `measure`). Each figure also carries the server's own CPU time
# per request (`cpu_us/req`: user + kernel time of its processes, from /proc), which the steal barely
# moves: at the fixed rate, what a request costs when it finds the caches cold.
# FIXED_ONLY=1 skips the maximum rates. COST=N counts
# the webhook's instructions per request instead (see below; COST_KEEP=dir keeps the callgrind dumps). Needs the Debian packages nginx-light and
# docker-registry, openssl, python3, curl, and oha (`cargo install oha --locked`). Not part of CI: the
# figures depend on what else the machine runs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
ROUNDS=${ROUNDS:-1}
RATE=${RATE:-5000}
CONNECTIONS=${CONNECTIONS:-50}
# STREAMS=N: over HTTP/2, N requests at a time on each connection (oha's -p). CONNECTIONS=1
# STREAMS=50 is how an API server calls a webhook: one HTTP/2 connection, many streams on it.
STREAMS=${STREAMS:-1}
OHA=${OHA:-$(command -v oha || echo /opt/oha/bin/oha)}
# PIN=1: the three servers on the first cores, the load generator on the last one (taskset), as
# in a cluster where the API server does not share the webhook's cores. Each server then sizes
# itself to the cores it may use (signet and the edge read their affinity; nginx is told).
SERVE=() LOADGEN=() WORKERS=auto
if [ -n "${PIN:-}" ]; then
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "PIN=1 needs at least 2 cores" >&2; exit 2; }
  SERVE=(taskset -c "0-$((last - 1))") LOADGEN=(taskset -c "$last") WORKERS=$last
fi

need() { command -v "$1" >/dev/null 2>&1 || { echo "missing $1: $2" >&2; exit 2; }; }
need nginx "apt-get install nginx-light"
need docker-registry "apt-get install docker-registry"
need openssl "apt-get install openssl"
need curl "apt-get install curl"
need python3 "apt-get install python3"
[ -x "$OHA" ] || { echo "missing oha: cargo install oha --locked (or set OHA=/path/to/oha)" >&2; exit 2; }

cargo build --release --quiet --bin signet --example edge_floor
# Where cargo just built them (CARGO_TARGET_DIR and CARGO_BUILD_TARGET as cargo reads them).
BIN=${CARGO_TARGET_DIR:-$PWD/target}/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}release/signet
# SIGNET_BIN=path measures another build of the webhook (one with line tables, for
# callgrind_annotate), the rest as built above.
FLOOR=$(dirname "$BIN")/examples/edge_floor
BIN=${SIGNET_BIN:-$BIN}
# VERSUS=path: the third server is `signet webhook` of that build (VERSUS_ARGS adds flags to its
# command line) instead of the edge alone, labelled "versus": two builds, or two settings of one
# (VERSUS=target/release/signet VERSUS_ARGS="--serving-threads 0"), compared in the same rounds,
# each against nginx in its `paired` line, which separates a change of a few percent from the
# machine's own drift far better than two runs apart.
VERSUS=${VERSUS:-}
THIRD=edge
[ -n "$VERSUS" ] && THIRD=versus

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { for _ in $(seq 100); do curl -sk -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 never answered" >&2; exit 1; }

# A registry holding three small images, signed by a fresh key.
reg_port=$(free_port)
registry="127.0.0.1:$reg_port"
mkdir -p "$work/registry"
cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $registry}
EOF
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
pids+=($!)
wait_for "http://$registry/v2/"

push_blob() { # repo file -> digest
  local digest location
  digest="sha256:$(sha256sum "$2" | cut -d' ' -f1)"
  location=$(curl -sf -X POST -D - -o /dev/null "http://$registry/v2/$1/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$location" in http*) ;; *) location="http://$registry$location" ;; esac
  case "$location" in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$2" "$location${sep}digest=$digest" -o /dev/null
  echo "$digest"
}
images=()
for name in app web worker; do
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{},"seed":"%s"}' "$name" > "$work/config.json"
  printf 'layer of %s' "$name" | gzip -n > "$work/layer.gz"
  config=$(push_blob "bench/$name" "$work/config.json")
  layer=$(push_blob "bench/$name" "$work/layer.gz")
  cat > "$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config","size":$(stat -c %s "$work/config.json")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$layer","size":$(stat -c %s "$work/layer.gz")}]}
EOF
  curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$work/manifest.json" "http://$registry/v2/bench/$name/manifests/v1" -o /dev/null
  images+=("$registry/bench/$name:v1")
done
"$BIN" keygen --algorithm ECDSA_P256_SHA_256 --output "$work/release" > /dev/null
for image in "${images[@]}"; do
  "$BIN" sign "$image" --key "file:$work/release.key" --algorithm ECDSA_P256_SHA_256 > /dev/null
done

# The policy folder: every image of bench/ signed by the release key.
mkdir -p "$work/policies"
python3 - "$work" "$registry" <<'EOF'
import sys
work, registry = sys.argv[1], sys.argv[2]
key = open(f"{work}/release.pub").read()
indented = "".join("      " + line + "\n" for line in key.splitlines())
open(f"{work}/policies/policy.yaml", "w").write(
    "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: release}\nspec:\n  keys:\n"
    "  - algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n" + indented +
    "---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata: {name: bench}\n"
    f"spec:\n  images: [\"{registry}/bench/**\"]\n  attestors: [release]\n")
EOF

# One certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$work/tls.key" -out "$work/tls.crt" 2> /dev/null

# The review: a Pod of the three images, as the API server sends it (compact JSON, no spaces after
# `:` and `,`: the API server's encoder writes no whitespace).
python3 - "$work" "${images[@]}" <<'EOF'
import json, sys
work, images = sys.argv[1], sys.argv[2:]
review = json.load(open("tests/fixtures/admission/pod-create.json"))
spec = review["request"]["object"]["spec"]
spec["containers"] = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
spec.pop("initContainers", None)
json.dump(review, open(f"{work}/review.json", "w"), separators=(",", ":"))
EOF

hook_port=$(free_port)
"${SERVE[@]}" "$BIN" --log info webhook --listen "127.0.0.1:$hook_port" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
  --policy-dir "$work/policies" --mutate=false ${WEBHOOK_ARGS:-} > "$work/webhook.log" 2>&1 &
webhook_pid=$!
pids+=($webhook_pid)
wait_for "https://127.0.0.1:$hook_port/readyz"
answer=$(curl -sk -X POST -H 'Content-Type: application/json' --data-binary @"$work/review.json" "https://127.0.0.1:$hook_port/validate")
case "$answer" in *'"allowed":true'*) ;; *) echo "the webhook did not allow the signed pod: $answer" >&2; exit 1 ;; esac

nginx_port=$(free_port)
mkdir -p "$work/nginx"
python3 - "$work" "$nginx_port" "$answer" "$WORKERS" <<'EOF'
import sys
work, port, answer, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
body = answer.replace("\\", "\\\\").replace("'", "\\'")
open(f"{work}/nginx.conf", "w").write(f"""
worker_processes {workers};
pid {work}/nginx/nginx.pid;
error_log {work}/nginx/error.log error;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx/body;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {work}/tls.crt;
    ssl_certificate_key {work}/tls.key;
    keepalive_requests 1000000;
    location / {{
      default_type application/json;
      return 200 '{body}';
    }}
  }}
}}
""")
EOF
"${SERVE[@]}" nginx -c "$work/nginx.conf" -e "$work/nginx/error.log" &
nginx_pid=$!
pids+=($nginx_pid)
wait_for "https://127.0.0.1:$nginx_port/"

floor_port=$(free_port)
printf '%s' "$answer" > "$work/answer.json"
if [ -n "$VERSUS" ]; then
  "${SERVE[@]}" "$VERSUS" --log info webhook --listen "127.0.0.1:$floor_port" --tls-cert "$work/tls.crt" \
    --tls-key "$work/tls.key" --policy-dir "$work/policies" --mutate=false ${VERSUS_ARGS:-} > "$work/floor.log" 2>&1 &
else
  "${SERVE[@]}" "$FLOOR" "127.0.0.1:$floor_port" "$work/tls.crt" "$work/tls.key" "$work/answer.json" > "$work/floor.log" 2>&1 &
fi
floor_pid=$!
pids+=($floor_pid)
wait_for "https://127.0.0.1:$floor_port/readyz"

# HOLD=1: set everything up, print where it runs, and wait (Ctrl-C ends it): for profiling by hand.
if [ -n "${HOLD:-}" ]; then
  echo "webhook https://127.0.0.1:$hook_port/validate pid $webhook_pid"
  echo "nginx https://127.0.0.1:$nginx_port/validate"
  echo "review $work/review.json"
  while sleep 3600; do :; done
fi

# COST=N: instead of rates, the webhook's own CPU work per cached admission, as user-space instructions
# counted by callgrind (valgrind): deterministic, so two builds compare on a busy machine where rates
# do not. Per protocol, after a warm-up: one run of one request per connection (50 connections, so 50
# TLS handshakes), one of N requests on 50 connections; "steady" is the difference per extra request
# and "connection" what each connection cost beyond its one request (handshake, set-up). Counted by
# difference, so it holds whatever the compiler inlined (an LTO build keeps few function names).
# "parse" is reading the review alone, when `parse_review` is still a function of its own. A run in
# which the webhook asked the registry anything (a cache entry expired: re-verification, not a cached
# admission) is measured again. The kernel's share is not counted (use `perf stat -e task-clock`).
# "code_lines" is the code footprint of one steady request: the 64-byte lines of code it runs
# (those the extra requests ran at least once per two), "of_signet" those of signet's own crate's
# functions. "I1_misses" are the misses of one steady request in a simulated 32 KiB, 8-way
# first-level instruction cache (callgrind `--cache-sim=yes`; the kernel's code, which also runs
# between two requests, is not simulated, so the real count is higher): a request whose code does
# not fit fetches most of it from the next level every time, about a dozen cycles a line.
# CONNECTIONS and STREAMS apply (CONNECTIONS=1 STREAMS=50 COST=1050: one HTTP/2 connection of 50
# streams, as an API server calls).
if [ -n "${COST:-}" ]; then
  need valgrind "apt-get install valgrind"
  cost_port=$(free_port)
  valgrind --tool=callgrind --dump-instr=yes --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 \
    --LL=2097152,16,64 --callgrind-out-file="$work/cg.%p" "$BIN" --log info webhook \
    --listen "127.0.0.1:$cost_port" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
    --policy-dir "$work/policies" --mutate=false --signature-cache-ttl 1h > "$work/cost.log" 2>&1 &
  cost_pid=$!
  pids+=($cost_pid)
  for _ in $(seq 300); do curl -sk -o /dev/null "https://127.0.0.1:$cost_port/readyz" && break; sleep 0.2; done
  cost_url="https://127.0.0.1:$cost_port/validate"
  registry_asked() {
    curl -sk "https://127.0.0.1:$cost_port/metrics" |
      awk '/^signet_webhook_registry_requests_total/ { sum += $NF } END { print sum + 0 }'
  }
  # counted REQUESTS PROTO -> the instructions callgrind counted while oha sent them; the dump is
  # left in $work/counted.
  counted() {
    callgrind_control -z "$cost_pid" > /dev/null 2>&1
    rm -f "$work/cg.$cost_pid"*
    "$OHA" --no-tui --insecure -n "$1" -c "$CONNECTIONS" "$2" $([ "$2" = --http2 ] && echo -p "$STREAMS") \
      -m POST -H 'Content-Type: application/json' -D "$work/review.json" "$cost_url" > /dev/null
    callgrind_control -d "$cost_pid" > /dev/null 2>&1
    local dump=""
    for _ in $(seq 240); do
      dump=$(grep -lE '^(summary|totals):' "$work/cg.$cost_pid"* 2>/dev/null | head -1) || true
      [ -n "$dump" ] && break
      sleep 0.5
    done
    [ -n "$dump" ] || { echo "callgrind wrote no dump" >&2; exit 1; }
    mv "$dump" "$work/counted"
    sed -nE 's/^(summary|totals): *([0-9]+).*/\2/p' "$work/counted" | head -1
  }
  [ "$COST" -gt "$CONNECTIONS" ] || { echo "COST must be more than $CONNECTIONS requests" >&2; exit 2; }
  printf '%-6s %11s %9s %9s %11s %11s %9s\n' proto connection steady parse code_lines of_signet I1_misses
  for proto in --http-version=1.1 --http2; do
    name=${proto#--}; name=${name#http-version=}
    "$OHA" --no-tui --insecure -n 1000 -c "$CONNECTIONS" $proto -m POST -H 'Content-Type: application/json' \
      -D "$work/review.json" "$cost_url" > /dev/null
    for attempt in 1 2 3; do
      asked=$(registry_asked)
      few=$(counted "$CONNECTIONS" "$proto")
      mv "$work/counted" "$work/counted.few"
      many=$(counted "$COST" "$proto")
      [ "$(registry_asked)" = "$asked" ] && break
      if [ "$attempt" -lt 3 ]; then
        echo "($name: the registry was asked during attempt $attempt; measuring again)" >&2
      else
        echo "($name: the registry was asked in all three attempts; steady below includes it)" >&2
      fi
    done
    # COST_KEEP=dir keeps each protocol's dumps of the N requests and of the few there (`.few`), for callgrind_annotate.
    [ -n "${COST_KEEP:-}" ] && mkdir -p "$COST_KEEP" && cp "$work/counted" "$COST_KEEP/callgrind.$name" &&
      cp "$work/counted.few" "$COST_KEEP/callgrind.$name.few"
    python3 - "$work/counted.few" "$work/counted" "$COST" "$CONNECTIONS" "$few" "$many" "$name" <<'PY'
import collections, re, sys
few_path, path, n, conns, few, many, proto = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
steady = (many - few) / (n - conns)
connection = (few - conns * steady) / conns

def read(path):
    """A dump (`--dump-instr=yes`) -> (instructions executed per (object, address), function of
    each address, self cost per function, inclusive cost per (caller, callee), total of
    simulated first-level instruction cache misses)."""
    names, counts, function = {}, collections.Counter(), {}
    own, calls = collections.Counter(), collections.Counter()
    ob = fn = callee = events = None
    npos, address, after_call, i1_misses = 1, 0, False, 0
    def name(kind, text):
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not m:
            return text
        if m.group(2):
            names[(kind, m.group(1))] = m.group(2)
        return names.get((kind, m.group(1)), text)
    for line in open(path, errors="replace"):
        if line.startswith("positions:"):
            npos = len(line.split()) - 1
        elif line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            if events and "I1mr" in events:
                i1_misses = int(line.split()[1 + events.index("I1mr")])
        elif line.startswith("ob="):
            ob = name("ob", line[3:].strip())
        elif line.startswith("cob="):
            name("ob", line[4:].strip())
        elif line.startswith("fn="):
            fn, after_call = name("fn", line[3:].strip()), False
        elif line.startswith(("cfn=", "cfni=")):
            callee = name("fn", line.split("=", 1)[1].strip())
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) <= npos:
                continue
            first = parts[0]
            if first[:1] in "+-":
                address += int(first)
            elif first != "*":
                address = int(first, 16) if first.startswith("0x") else int(first)
            cost = int(parts[npos])
            if after_call:
                calls[(fn, callee)] += cost
                after_call = False
            else:
                own[fn] += cost
                counts[(ob, address)] += cost
                function[(ob, address)] = fn
    return counts, function, own, calls, i1_misses

few_counts, _, _, _, few_i1 = read(few_path)
counts, function, own, calls, many_i1 = read(path)
# Reading the review: parse_review's inclusive cost in the dump of the N requests, if it is a
# function of its own in this build.
parse_fn = "signet::admission::review::parse_review"
parse = own[parse_fn] + sum(c for (a, b), c in calls.items() if a == parse_fn and b != a)
# Code footprint: the 64-byte lines holding instructions that the extra N - CONNECTIONS requests
# ran at least once per two requests (a dump of N requests less one of CONNECTIONS), and of them
# the lines of functions of signet's own crate. At a fixed rate a request finds the caches cold,
# and every line it runs is then a cache miss.
runs = n - conns
lines, own_lines = set(), set()
for key, count in counts.items():
    if count - few_counts.get(key, 0) >= runs / 2:
        lines.add((key[0], key[1] >> 6))
        if "signet::" in (function.get(key) or ""):
            own_lines.add((key[0], key[1] >> 6))
i1 = (many_i1 - few_i1) / runs
print("%-6s %11.0f %9.0f %9s %11d %11d %9.0f" % (proto, connection, steady, "%.0f" % (parse / n) if parse else "inlined", len(lines), len(own_lines), i1))
PY
  done
  exit 0
fi

# oha's JSON summary -> "rps p50_ms p99_ms success"
summary() {
  python3 -c '
import json, sys
s = json.load(sys.stdin)
p = s["latencyPercentiles"]
print("%.0f %.2f %.2f %s" % (s["summary"]["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000,
      s["summary"]["successRate"]))'
}
# The machine's CPU time so far, "steal total" in clock ticks (/proc/stat): steal is time the
# hypervisor ran another guest while this one had work.
cpu_ticks() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
# The CPU time (user + kernel, clock ticks) the processes PIDS... and their threads have used so far.
process_ticks() { local pid total=0; for pid in "$@"; do total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done; echo "$total"; }
# A fixed-rate run's latencies from oha's per-request records (`--db-url`, SQLite) -> "p50_ms p99_ms
# p99_all_ms": p50 and p99 of the requests sent after the first WARMUP seconds (default 1), and the
# p99 of every request. Why: a run starts with CONNECTIONS TLS handshakes at once, and the requests
# queued behind them took 25-100 ms to answer, for every server (measured: the first 50-150 ms of a
# run held all but a few of signet's slowest 1%); in a 5 s run that start is about 1% of the
# requests, so the p99 of the whole run measured the start, not the steady state of cached
# admissions it is meant to show. Both are printed.
latencies() { # db
  python3 - "$1" "${WARMUP:-1}" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("select start, end from oha").fetchall()
warmup = float(sys.argv[2])
first = min(start for start, _ in rows)
def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else float("nan")
steady = [end - start for start, end in rows if start - first >= warmup]
every = [end - start for start, end in rows]
print("%.2f %.2f %.2f" % (pct(steady, 0.5), pct(steady, 0.99), pct(every, 0.99)))
PY
}

# One run -> "rps p50_ms p99_ms success steal_% cpu_us p99_all_ms": cpu_us is the server's CPU time
# per request (its processes PIDS, all threads). Stolen time is not charged to a process, so unlike
# the p99 it barely moves with the steal; at a fixed rate it is what a request costs on cold caches.
# At a fixed rate, p50 and p99 leave out the first WARMUP seconds (see `latencies`) and p99_all is
# that of every request; at the maximum rate all three are oha's own, of every request.
load() { # url http-flag rate-or-empty pids...
  local rate=() db=() line s0 t0 s1 t1 c0 c1 url=$1 flag=$2 rps p50 p99 ok
  if [ -n "${3:-}" ]; then
    rate=(-q "$3")
    rm -f "$work/latency.db"
    db=(--db-url "$work/latency.db")
  fi
  shift 3
  read -r s0 t0 < <(cpu_ticks)
  c0=$(process_ticks "$@")
  line=$("${LOADGEN[@]}" "$OHA" --no-tui --output-format json --insecure -z "${SECONDS_PER_RUN}s" -c "$CONNECTIONS" "${rate[@]}" $flag \
    $([ "$flag" = --http2 ] && echo -p "$STREAMS") \
    -m POST -H 'Content-Type: application/json' -D "$work/review.json" "${db[@]}" "$url" \
    2> >(grep -v '^Storing results' >&2) | summary)
  c1=$(process_ticks "$@")
  read -r s1 t1 < <(cpu_ticks)
  read -r rps p50 p99 ok <<< "$line"
  local all=$p99
  [ -n "${db[*]}" ] && read -r p50 p99 all < <(latencies "$work/latency.db")
  echo "$rps $p50 $p99 $ok $(python3 -c "
print('%.1f %.1f' % (100 * ($s1 - $s0) / max($t1 - $t0, 1), ($c1 - $c0) * 1e6 / $(getconf CLK_TCK) / max($rps * $SECONDS_PER_RUN, 1)))") $all"
}

# ROUNDS rounds of one run of each server in turn -> three lines of medians, "rps p50 p99 success
# steal_% cpu_us p99_all rounds": signet's, its edge alone, nginx's. With MAX_STEAL=P, a round in which any of
# the three runs had more than P percent of the CPU time stolen is not counted, and rounds go on
# until ROUNDS are counted or 4 x ROUNDS were run (then the medians are of every round, and
# "rounds" says 0): on a shared virtual machine, the p99 at a fixed rate follows the steal (all
# three servers measured 16-68 ms at 15-40% steal), and the steal changes from minute to minute.
measure() { # http-flag [rate]
  local attempt turn kept=0 h e y
  for attempt in $(seq $((4 * ROUNDS))); do
    # Each round starts with another server, so that none is always measured right after the same one.
    for turn in $(seq 0 2); do
      case $(((attempt + turn) % 3)) in
        1) h=$(load "$hook" "$1" "${2:-}" "$webhook_pid") ;;
        2) e=$(load "$edge" "$1" "${2:-}" "$floor_pid") ;;
        0) y=$(load "$yard" "$1" "${2:-}" "$nginx_pid" $(pgrep -P "$nginx_pid")) ;;
      esac
    done
    echo "$h|$e|$y"
    if python3 -c "import sys; sys.exit(0 if max(float(r.split()[4]) for r in sys.argv[1:]) <= ${MAX_STEAL:-100} else 1)" "$h" "$e" "$y"; then
      kept=$((kept + 1))
      [ "$kept" -ge "$ROUNDS" ] && break
    fi
  done | python3 -c '
import statistics, sys
limit = float(sys.argv[1])
rounds = [[[float(v) for v in run.split()] for run in line.strip().split("|")] for line in sys.stdin]
calm = [r for r in rounds if max(run[4] for run in r) <= limit]
used = calm or rounds
for i in range(3):
    columns = list(zip(*(r[i] for r in used)))
    print("%.0f %.2f %.2f %s %.1f %.1f %.2f %d" % (*(statistics.median(c) for c in columns), len(calm)))
# Paired: signet / nginx and edge / nginx within each round, which a change of the machine from one
# minute to the next moves less than the medians of each server apart; the rate at the maximum
# rate, the p99 at a fixed one.
label, column = ("p99", 2) if sys.argv[2] else ("rate", 0)
parts = []
for who, server in (("signet", 0), (sys.argv[3], 1)):
    values = [r[server][column] / r[2][column] for r in used if r[2][column] > 0]
    median = statistics.median(values) if values else float("nan")
    parts.append("%s_%s=%.2f[%s]" % (who, label, median, ",".join("%.2f" % v for v in values)))
print(" ".join(parts))' "${MAX_STEAL:-100}" "${2:-}" "$THIRD"
}

# The webhook's own time per admission (`signet_webhook_admission_duration_seconds`, from request
# received to answer ready): "count le0.25ms le1ms" of the /validate histogram, to tell the time spent
# inside signet from the time a request waits for a core, the network stack or the load generator.
server_times() {
  curl -sk "https://127.0.0.1:$hook_port/metrics" | python3 -c '
import re, sys
b = {}
for line in sys.stdin:
    m = re.match(r"signet_webhook_admission_duration_seconds_bucket\{endpoint=\"validate\",le=\"([^\"]+)\"\} (\d+)", line)
    if m:
        b[m.group(1)] = int(m.group(2))
print(b.get("+Inf", 0), b.get("0.00025", 0), b.get("0.001", 0))'
}

hook="https://127.0.0.1:$hook_port/validate"
yard="https://127.0.0.1:$nginx_port/validate"
edge="https://127.0.0.1:$floor_port/validate"
load "$hook" --http-version=1.1 "" "$webhook_pid" > /dev/null   # warm them up
load "$yard" --http-version=1.1 "" "$nginx_pid" > /dev/null
load "$edge" --http-version=1.1 "" "$floor_pid" > /dev/null
echo "cached 3-image Pod admission, $CONNECTIONS connections$([ "$STREAMS" -gt 1 ] && echo " ($STREAMS streams each over HTTP/2)"), ${SECONDS_PER_RUN}s per run, median of $ROUNDS, $(nproc) cores"
echo "(steal: the share of the machine's CPU time the hypervisor gave to other guests during the run; MAX_STEAL=${MAX_STEAL:-none})"
echo "(at ${RATE} req/s, p50 and p99 leave out the first ${WARMUP:-1} s of each run, its TLS handshakes; p99_all counts every request)"
printf '%-9s %-14s %10s %9s %9s %8s %7s %9s %9s %7s\n' proto server req/s p50_ms p99_ms success steal% cpu_us/req p99_all rounds
row() { printf '%-9s %-14s %10s %9s %9s %8s %7s %9s %9s %7s\n' "$@"; }
# measure's three lines on standard input -> the rows of signet, the edge and nginx, labelled "$1";
# leaves h_rps, e_rps and n_rps set for the ratios.
rows() {
  local h_p50 h_p99 h_ok h_st h_cpu h_all h_n e_p50 e_p99 e_ok e_st e_cpu e_all e_n
  local n_p50 n_p99 n_ok n_st n_cpu n_all n_n
  read -r h_rps h_p50 h_p99 h_ok h_st h_cpu h_all h_n
  read -r e_rps e_p50 e_p99 e_ok e_st e_cpu e_all e_n
  read -r n_rps n_p50 n_p99 n_ok n_st n_cpu n_all n_n
  read -r paired
  row "$name" "signet $1" "$h_rps" "$h_p50" "$h_p99" "$h_ok" "$h_st" "$h_cpu" "$h_all" "$h_n"
  row "$name" "$THIRD $1" "$e_rps" "$e_p50" "$e_p99" "$e_ok" "$e_st" "$e_cpu" "$e_all"
  row "$name" "nginx $1" "$n_rps" "$n_p50" "$n_p99" "$n_ok" "$n_st" "$n_cpu" "$n_all"
  printf '%-9s %-14s %s\n' "$name" "paired" "$paired"
}
for proto in "--http-version=1.1" "--http2"; do
  name=${proto#--}; name=${name#http-version=}
  # FIXED_ONLY=1 measures the fixed rate alone (the p99), not the maximum rates.
  if [ -z "${FIXED_ONLY:-}" ]; then
    # PERF_RECORD=file: a CPU profile of the webhook during its HTTP/1.1 maximum-rate run.
    if [ -n "${PERF_RECORD:-}" ] && [ "$name" = 1.1 ]; then
      perf record -e cpu-clock -F 4000 -g -p "$webhook_pid" -o "$PERF_RECORD" -- sleep "$SECONDS_PER_RUN" \
        > /dev/null 2>&1 &
    fi
    rows max < <(measure "$proto")
    python3 -c "print('%-9s %-14s %10.2f' % ('$name', 'ratio', $h_rps / $n_rps))"
    python3 -c "print('%-9s %-14s %10.2f' % ('$name', '$THIRD ratio', $e_rps / $n_rps))"
  fi
  read -r t0 q0 m0 < <(server_times)
  rows "@$RATE" < <(measure "$proto" "$RATE")
  read -r t1 q1 m1 < <(server_times)
  python3 -c "n = max($t1 - $t0, 1); print('%-9s %-14s %s admissions, %.2f%% answered within 0.25 ms and %.2f%% within 1 ms of their arrival' % ('$name', 'signet inside', n, 100 * ($q1 - $q0) / n, 100 * ($m1 - $m0) / n))"
done
