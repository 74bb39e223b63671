#!/usr/bin/env bash
# raftkv beside etcd on this machine: installs etcd when missing (Debian's etcd-server), builds
# raftkv, starts a 3-member etcd and a 3-member raftkv on loopback, runs the same matrix of loads
# against both through etcd's v3 gRPC API (interleaved, round after round), prints one table and
# keeps it in bench/results/<date>-<host>.md. Stops everything it started.
#
#   bench/compare-etcd.sh                  # the full matrix, 2 rounds of 5 s per workload
#   bench/compare-etcd.sh --rounds 3 --seconds 10
#   ETCD=/path/to/etcd bench/compare-etcd.sh
# Any flag is passed to `raftkv bench compare` (see `raftkv bench compare --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif have sudo; then sudo "$@"
  else echo "compare-etcd: root is needed to run: $*" >&2; exit 1
  fi
}

etcd="${ETCD:-etcd}"
if ! "$etcd" --version >/dev/null 2>&1; then
  if ! have apt-get; then
    echo "compare-etcd: etcd is missing; install it or set ETCD to an etcd binary" >&2
    exit 1
  fi
  echo "compare-etcd: installing etcd (Debian's etcd-server)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server \
    >/dev/null 2>&1 ||
    { as_root apt-get update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server; }
  # The package may start a system etcd on the default ports; the comparison runs its own.
  if have systemctl; then as_root systemctl stop etcd >/dev/null 2>&1 || true; fi
  etcd=etcd
fi

cargo build --release --quiet -p raftkv
out="bench/results/$(date -u +%Y-%m-%d-%H%M)-$(hostname -s).md"
exec target/release/raftkv bench compare --etcd "$(command -v "$etcd")" --out "$out" "$@"
