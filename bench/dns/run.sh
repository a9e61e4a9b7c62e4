#!/usr/bin/env bash
# Compares `outpost dns` with Knot DNS serving the same zone, using dnsperf:
#   1. static answers (a mix of A, AAAA, MX, CNAME, wildcard, NXDOMAIN)
#   2. a steered name (outpost: geo steering with ECS; Knot: the static record)
# and prints queries/s, average latency and the outpost/Knot ratio.
#
# Usage: bench/dns/run.sh [seconds per run, default 10]
# Env: ROUNDS (default 3), CLIENTS (dnsperf -c, default 4), OUTSTANDING (dnsperf -q, default 200).
# Installs dnsperf, knot and knot-dnsutils (kdig) with apt-get when missing (needs root).
set -euo pipefail

DUR=${1:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-200}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ZONE=$ROOT/bench/dns/bench.zone
TMP=$(mktemp -d)
OUTPOST_PORT=18053
KNOT_PORT=18054
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

. "$ROOT/bench/lib.sh"
need dnsperf dnsperf
need knotd knot
need kdig knot-dnsutils

echo "building outpost ..." >&2
(cd "$ROOT" && go build -o "$TMP/outpost" ./cmd/outpost)

"$TMP/outpost" dns --listen "127.0.0.1:$OUTPOST_PORT" --zone "$ZONE" \
	--steer geo.bench.test \
	--node eu,127.0.0.11,50.11,8.68 --node us,127.0.0.12,39.04,-77.49 --node ap,127.0.0.13,35.68,139.69 \
	2>"$TMP/outpost.log" &
PIDS+=($!)

cat >"$TMP/knot.conf" <<CONF
server:
    rundir: "$TMP"
    listen: 127.0.0.1@$KNOT_PORT
database:
    storage: "$TMP/knotdb"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$TMP"
    semantic-checks: off
zone:
  - domain: bench.test
    file: "$ZONE"
    journal-content: none
    zonefile-sync: -1
CONF
knotd -c "$TMP/knot.conf" 2>"$TMP/knot.log" &
PIDS+=($!)

# Wait for both to answer.
for port in $OUTPOST_PORT $KNOT_PORT; do
	for _ in $(seq 50); do
		if kdig +short +time=1 +tries=1 @127.0.0.1 -p "$port" bench.test SOA >/dev/null 2>&1; then break; fi
		sleep 0.2
	done
done

cat >"$TMP/static.txt" <<Q
www.bench.test A
www.bench.test AAAA
bench.test MX
bench.test SOA
api.bench.test A
alias.bench.test A
x.wild.bench.test A
txt.bench.test TXT
nope.bench.test A
www.bench.test MX
Q
echo "geo.bench.test A" >"$TMP/steered.txt"

# perf SERVER_PORT QUERYFILE [extra dnsperf args] -> "qps latency_ms"
perf() {
	local port=$1 file=$2
	shift 2
	dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$DUR" -c "$CLIENTS" -q "$OUTSTANDING" "$@" >"$TMP/perf.out" 2>&1 || true
	local qps lat lost
	qps=$(awk '/Queries per second:/ {print $4}' "$TMP/perf.out")
	lat=$(awk '/Average Latency/ {printf "%.3f", $4*1000}' "$TMP/perf.out")
	lost=$(awk '/Queries lost:/ {print $3}' "$TMP/perf.out")
	echo "${qps:-0} ${lat:-0} ${lost:-?}"
}

# ECS 193.0.0.0/24 (NL): family 1, source /24, scope 0, address 193.0.0.
ECS="-E 8:00011800c10000"

# Runs alternate between the servers for ROUNDS rounds, so load changes on
# a shared machine hit both alike; the median of each series is compared.
printf "%-34s %14s %10s %8s\n" "run (${DUR}s, -c $CLIENTS -q $OUTSTANDING)" "queries/s" "avg ms" "lost"
declare -A QPS LAT
run() { # label port file [dnsperf args]
	local label=$1 port=$2 file=$3
	shift 3
	local qps lat lost
	read -r qps lat lost < <(perf "$port" "$file" "$@")
	printf "%-34s %14.0f %10s %8s\n" "$label" "$qps" "$lat" "$lost"
	QPS[$label]="${QPS[$label]:-} $qps"
	LAT[$label]="${LAT[$label]:-} $lat"
}
for r in $(seq "$ROUNDS"); do
	run "knot static" $KNOT_PORT "$TMP/static.txt"
	run "outpost static" $OUTPOST_PORT "$TMP/static.txt"
	run "knot geo (static record, ECS)" $KNOT_PORT "$TMP/steered.txt" $ECS
	run "outpost geo (steered, ECS)" $OUTPOST_PORT "$TMP/steered.txt" $ECS
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "medians over $ROUNDS rounds:"
for l in "knot static" "outpost static" "knot geo (static record, ECS)" "outpost geo (steered, ECS)"; do
	printf "  %-32s %10.0f q/s %8s ms\n" "$l" "$(echo "${QPS[$l]}" | median)" "$(echo "${LAT[$l]}" | median)"
done
k=$(echo "${QPS[knot static]}" | median)
o=$(echo "${QPS[outpost static]}" | median)
ks=$(echo "${QPS[knot geo (static record, ECS)]}" | median)
os=$(echo "${QPS[outpost geo (steered, ECS)]}" | median)
echo
echo "outpost/knot static:               $(ratio "$o" "$k")  (target >= 1.00)"
echo "outpost steered / knot static:     $(ratio "$os" "$k")  (target >= 0.80)"
echo "outpost steered / knot same name:  $(ratio "$os" "$ks")"
