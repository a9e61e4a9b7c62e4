#!/usr/bin/env bash
# cache.sh — cache HIT scenario: wrk against Outpost (`outpost proxy`),
# nginx with proxy_cache and Varnish, all three in front of the same local
# origin (bench/http/cacheorigin), for 1 KiB, 100 KiB and 10 MiB objects.
# Every cache is warmed first; the origin's request counter is checked after
# the runs, so the figures are hits. Runs are interleaved (outpost, nginx,
# varnish, outpost, ...) so machine noise hits all alike. Prints requests/s,
# MB/s and p99 per run, the means, and Outpost's ratios to each peer.
# Targets: Outpost >= nginx requests/s for 1 KiB hits and >= nginx MB/s for
# 10 MiB hits.
#
# With BIG=1 it first serves a cached 1 GiB object to 50 concurrent clients
# through Outpost and prints the process's peak RSS (target < 100 MiB).
#
# Usage: bench/http/cache.sh              (from anywhere in the repo)
# Knobs (env): DURATION=10s CONNS=64 THREADS=2 ROUNDS=3 SIZES="1k 100k 10m"
#              PEERS="nginx varnish" BIG=0 BASE_PORT=18180 (uses +0..+3)
#              SENDFILE=on|off: how Outpost and nginx send cached files —
#              sendfile(2) (on, the default: nginx as Debian configures
#              it) or copied through a buffer (off: Outpost's
#              edge.sendfile false, nginx's `sendfile off`; Varnish always
#              copies). Compare like with like.
#              LOWAT=16KiB: Outpost's edge.notsent_lowat (TCP_NOTSENT_LOWAT
#              on its client connections; 16KiB is its default, 0 the
#              kernel's setting). nginx and Varnish cannot set it per
#              socket; KERNEL_LOWAT=BYTES sets the system-wide
#              net.ipv4.tcp_notsent_lowat for the run (root; restored at
#              exit), which they then use — with LOWAT=0 Outpost too.
#              Compare like with like: see docs/cache.md.
# Outpost runs without its access log, as nginx and Varnish run here without
# logging. Needs: go, curl, wrk, nginx, varnish (Debian packages; installed
# with apt-get when missing and running as root).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-"1k 100k 10m"}
PEERS=${PEERS-"nginx varnish"}
BIG=${BIG:-0}
BASE_PORT=${BASE_PORT:-18180}
SENDFILE=${SENDFILE:-on}
LOWAT=${LOWAT:-16KiB}
KERNEL_LOWAT=${KERNEL_LOWAT:-}
case $SENDFILE in
on) OUTPOST_SENDFILE=true ;;
off) OUTPOST_SENDFILE=false ;;
*) echo "cache.sh: SENDFILE=on or off, got $SENDFILE" >&2; exit 2 ;;
esac

ORIGIN=127.0.0.1:$BASE_PORT
declare -A ADDR=(
	[outpost]=127.0.0.1:$((BASE_PORT + 1))
	[nginx]=127.0.0.1:$((BASE_PORT + 2))
	[varnish]=127.0.0.1:$((BASE_PORT + 3))
)

cd "$(dirname "$0")/../.."
WORK=$(mktemp -d /tmp/outpost-cachebench.XXXXXX)
PIDS=()
OLD_LOWAT=
cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$WORK"
	if [ -n "$OLD_LOWAT" ]; then
		sysctl -qw net.ipv4.tcp_notsent_lowat="$OLD_LOWAT" || true
	fi
}
trap cleanup EXIT INT TERM

if [ -n "$KERNEL_LOWAT" ]; then
	OLD_LOWAT=$(sysctl -n net.ipv4.tcp_notsent_lowat)
	sysctl -qw net.ipv4.tcp_notsent_lowat="$KERNEL_LOWAT"
	echo "net.ipv4.tcp_notsent_lowat=$KERNEL_LOWAT for this run (was $OLD_LOWAT)" >&2
fi

. bench/lib.sh
need wrk wrk
need curl curl
for p in $PEERS; do
	case $p in
	nginx) need nginx nginx ;;
	varnish) PATH=$PATH:/usr/sbin need varnishd varnish ;;
	*) echo "cache.sh: unknown peer $p" >&2; exit 2 ;;
	esac
done
export PATH=$PATH:/usr/sbin

echo "building ..." >&2
go build -o "$WORK/outpost" ./cmd/outpost
go build -o "$WORK/cacheorigin" ./bench/http/cacheorigin
if ! "$WORK/outpost" help proxy >/dev/null 2>&1; then
	echo "cache.sh: 'outpost proxy' is not available in this build" >&2
	exit 1
fi

wait_port() { # addr
	for _ in $(seq 1 100); do
		if curl -s -o /dev/null "http://$1/1k"; then return 0; fi
		sleep 0.1
	done
	echo "cache.sh: nothing answers on $1" >&2
	exit 1
}

"$WORK/cacheorigin" --listen "$ORIGIN" 2>"$WORK/origin.log" & PIDS+=($!)
wait_port "$ORIGIN"

"$WORK/outpost" proxy --listen "${ADDR[outpost]}" --origin "http://$ORIGIN" \
	--cache-dir "$WORK/outpost-cache" --cache-size 8GiB --access-log=false --sendfile="$OUTPOST_SENDFILE" --notsent-lowat="$LOWAT" >"$WORK/outpost.log" 2>&1 & PIDS+=($!)
OUTPOST_PID=$!
declare -A PID=([outpost]=$OUTPOST_PID)

for p in $PEERS; do
	case $p in
	nginx)
		mkdir -p "$WORK/nginx"
		cat >"$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile $SENDFILE;
	keepalive_requests 1000000;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=c:64m max_size=8g inactive=1h use_temp_path=off;
	upstream origin { server $ORIGIN; keepalive 64; }
	server {
		listen ${ADDR[nginx]};
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache c;
			proxy_cache_lock on;
			proxy_max_temp_file_size 0;
			add_header X-Cache \$upstream_cache_status;
		}
	}
}
EOF
		nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx.log" 2>&1 & PIDS+=($!)
		PID[nginx]=$!
		;;
	varnish)
		varnishd -F -j none -n "$WORK/varnish" -a "${ADDR[varnish]}" -b "$ORIGIN" \
			-s malloc,2g -p default_ttl=3600 >"$WORK/varnish.log" 2>&1 & PIDS+=($!)
		PID[varnish]=$!
		;;
	esac
done

SERVERS="outpost $PEERS"
for s in $SERVERS; do
	wait_port "${ADDR[$s]}"
done

# The 1 GiB run goes first, on a fresh process, so its RSS is not the
# high-water mark of the throughput runs.
if [ "$BIG" = 1 ]; then
	echo "1 GiB object, 50 concurrent clients, through a fresh Outpost:"
	# The first fetch fills the cache; the object is committed just after
	# its client got the last byte, so wait for a HIT.
	curl -s -o /dev/null "http://${ADDR[outpost]}/1g"
	for _ in $(seq 1 50); do
		curl -s -o /dev/null -D "$WORK/big.hdr" "http://${ADDR[outpost]}/1g"
		grep -qi '^x-cache: HIT' "$WORK/big.hdr" && break
	done
	grep -i '^x-cache' "$WORK/big.hdr" || true
	idle=$(awk '/VmRSS/ {print $2}' "/proc/$OUTPOST_PID/status")
	CURLS=()
	for _ in $(seq 1 50); do
		curl -s -o /dev/null "http://${ADDR[outpost]}/1g" & CURLS+=($!)
	done
	peak=0
	running() { for c in "${CURLS[@]}"; do kill -0 "$c" 2>/dev/null && return 0; done; return 1; }
	while running; do
		rss=$(awk '/VmRSS/ {print $2}' "/proc/$OUTPOST_PID/status")
		[ "$rss" -gt "$peak" ] && peak=$rss
		sleep 0.2
	done
	wait "${CURLS[@]}" 2>/dev/null || true
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$OUTPOST_PID/status")
	echo "outpost RSS: $((idle / 1024)) MiB before, peak $((peak / 1024)) MiB while serving (VmHWM over the whole run incl. the fill: $((hwm / 1024)) MiB)"
fi

# Warm every cache with every object (twice: the second must be a hit).
for size in $SIZES; do
	for s in $SERVERS; do
		curl -s -o /dev/null "http://${ADDR[$s]}/$size"
		curl -s -o /dev/null "http://${ADDR[$s]}/$size"
	done
done
BEFORE=$(curl -s "http://$ORIGIN/_count")

# run_wrk URL -> "rps mbps p99_ms requests"
run_wrk() {
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" | awk '
		function ms(v) {
			if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
			if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
			if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
			if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
			return v
		}
		function mb(v) {
			if (v ~ /GB$/) { sub(/GB$/, "", v); return v * 1024 }
			if (v ~ /MB$/) { sub(/MB$/, "", v); return v + 0 }
			if (v ~ /KB$/) { sub(/KB$/, "", v); return v / 1024 }
			if (v ~ /B$/)  { sub(/B$/, "", v);  return v / 1048576 }
			return v
		}
		/Requests\/sec:/ { rps = $2 }
		/ requests in / { n = $1 }
		/Transfer\/sec:/ { tp = mb($2) }
		$1 == "99%" { p99 = ms($2) }
		/Non-2xx or 3xx responses:/ { bad += $NF }
		/Socket errors:/ { errs = $0 }
		END {
			if (bad > 0) printf "warning: %d non-2xx responses\n", bad > "/dev/stderr"
			if (errs != "") print "warning: " errs > "/dev/stderr"
			printf "%.0f %.1f %.3f %d\n", rps, tp, p99, n
		}'
}

# CPU us/req: the server's own CPU per request (user + system from /proc,
# worker processes included), which does not depend on how the load
# generator shares the machine.
declare -A SUM_RPS SUM_MB SUM_P99 SUM_CPU
echo
printf "%-6s %-5s %-8s %12s %10s %10s %11s\n" size round server "requests/s" "MB/s" "p99 ms" "CPU us/req"
for size in $SIZES; do
	for s in $SERVERS; do SUM_RPS[$size.$s]=0; SUM_MB[$size.$s]=0; SUM_P99[$size.$s]=0; SUM_CPU[$size.$s]=0; done
	for round in $(seq 1 "$ROUNDS"); do
		for s in $SERVERS; do
			c0=$(cpu_ms "${PID[$s]}")
			read -r rps mbps p99 n < <(run_wrk "http://${ADDR[$s]}/$size")
			cpu=$(us_per_req "$c0" "$(cpu_ms "${PID[$s]}")" "$n")
			printf "%-6s %-5s %-8s %12s %10s %10s %11s\n" "$size" "$round" "$s" "$rps" "$mbps" "$p99" "$cpu"
			SUM_RPS[$size.$s]=$(awk -v a="${SUM_RPS[$size.$s]}" -v b="$rps" 'BEGIN{print a+b}')
			SUM_MB[$size.$s]=$(awk -v a="${SUM_MB[$size.$s]}" -v b="$mbps" 'BEGIN{print a+b}')
			SUM_P99[$size.$s]=$(awk -v a="${SUM_P99[$size.$s]}" -v b="$p99" 'BEGIN{print a+b}')
			SUM_CPU[$size.$s]=$(awk -v a="${SUM_CPU[$size.$s]}" -v b="$cpu" 'BEGIN{print a+b}')
		done
	done
done
AFTER=$(curl -s "http://$ORIGIN/_count")

echo
echo "means over $ROUNDS rounds ($DURATION each, $CONNS connections):"
printf "%-6s %-8s %12s %10s %10s %11s\n" size server "requests/s" "MB/s" "p99 ms" "CPU us/req"
for size in $SIZES; do
	for s in $SERVERS; do
		awk -v size="$size" -v s="$s" -v n="$ROUNDS" -v r="${SUM_RPS[$size.$s]}" -v m="${SUM_MB[$size.$s]}" -v p="${SUM_P99[$size.$s]}" \
			-v c="${SUM_CPU[$size.$s]}" 'BEGIN { printf "%-6s %-8s %12.0f %10.1f %10.3f %11.1f\n", size, s, r/n, m/n, p/n, c/n }'
	done
done
echo
echo "ratios (outpost / peer; p99: lower is better):"
for size in $SIZES; do
	for p in $PEERS; do
		awk -v size="$size" -v p="$p" -v or="${SUM_RPS[$size.outpost]}" -v pr="${SUM_RPS[$size.$p]}" \
			-v om="${SUM_MB[$size.outpost]}" -v pm="${SUM_MB[$size.$p]}" -v op="${SUM_P99[$size.outpost]}" -v pp="${SUM_P99[$size.$p]}" \
			'BEGIN { printf "%-6s vs %-8s requests/s x%.2f   MB/s x%.2f   p99 x%.2f\n", size, p, or/pr, (pm > 0 ? om/pm : 0), (pp > 0 ? op/pp : 0) }'
	done
done
echo "origin requests during the runs: $((AFTER - BEFORE)) (0 means every measured request was a hit)"

