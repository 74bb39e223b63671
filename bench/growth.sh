#!/usr/bin/env bash
# raftkv as the data grows: starts a 3-member raftkv on loopback (standalone `raftkv serve`
# processes), writes KEYS keys of 256 B in 10 chunks through etcd's v3 gRPC API (128 clients),
# prints each chunk's throughput and p99 and each member's resident memory at the end; then stops
# a follower, overwrites every key while it is down, restarts it and prints how long it takes
# to catch up (through a snapshot from the leader). Stops everything it started.
#
#   bench/growth.sh                 # 1,000,000 keys
#   KEYS=200000 bench/growth.sh
set -euo pipefail
cd "$(dirname "$0")/.."

keys="${KEYS:-1000000}"
chunk=$((keys / 10))
cargo build --release --quiet -p raftkv
raftkv="$PWD/target/release/raftkv"
dir="$(mktemp -d /tmp/raftkv-growth.XXXXXX)"
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT

base=$((20000 + RANDOM % 20000))
client() { echo "127.0.0.1:$((base + $1))"; }
peer() { echo "127.0.0.1:$((base + 10 + $1))"; }
initial="n1=http://$(peer 1),n2=http://$(peer 2),n3=http://$(peer 3)"
start() {
  "$raftkv" serve --name "n$1" --data-dir "$dir/n$1" --listen-client "$(client "$1")" \
    --listen-peer "$(peer "$1")" --initial-cluster "$initial" >>"$dir/n$1.log" 2>&1 &
  pids[$1]=$!
}
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
status() { curl -sf --max-time 2 "http://$(client "$1")/v1/status"; }

for i in 1 2 3; do start "$i"; done
leader=""
for _ in $(seq 100); do
  leader=$(status 1 | field '["leader_name"]' 2>/dev/null || true)
  [ -n "$leader" ] && [ "$leader" != None ] && break
  sleep 0.2
done
n=${leader#n}
echo "leader: $leader; $keys keys of 256 B in 10 chunks, 128 clients"
load() {
  "$raftkv" bench --protocol etcd --clients 128 --requests "$chunk" --keys "$chunk" \
    --first-key "$1" --endpoints "$(client "$n")" 2>/dev/null
}
for c in $(seq 0 9); do
  load $((c * chunk)) | python3 -c 'import json, sys
s = json.load(sys.stdin)
print("keys %s: %.0f puts/s, p99 %.1f ms" % (sys.argv[1], s["ops_per_sec"], s["latency_ms"]["p99"]))' \
    "$((c * chunk))..$(((c + 1) * chunk))"
done
for i in 1 2 3; do
  echo "n$i resident memory: $(awk '/VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/${pids[$i]}/status")"
done

follower=$((n % 3 + 1))
kill "${pids[$follower]}"; wait "${pids[$follower]}" 2>/dev/null || true
echo "n$follower stopped; overwriting $keys keys"
for c in $(seq 0 9); do load $((c * chunk)) >/dev/null; done
commit=$(status "$n" | field '["commit_index"]')
began=$(date +%s.%N)
start "$follower"
until applied=$(status "$follower" | field '["applied_index"]' 2>/dev/null) && [ "$applied" -ge "$commit" ]; do
  sleep 0.2
done
ended=$(date +%s.%N)
echo "n$follower caught up to index $commit in $(python3 -c "print(round($ended - $began, 1))") s after its restart"
grep -h "installed snapshot" "$dir/n$follower.log" | tail -1 || true
