#!/usr/bin/env bash
# passthrough.sh — pass-through scenario: wrk through Outpost and through
# HAProxy, round robin over the same two local backends (1 KiB bodies),
# keep-alive on both sides, runs interleaved (outpost, haproxy, outpost, ...)
# so machine noise hits both alike. Prints requests/s and p99 per run, the
# means, and the ratios. Target: Outpost rps >= HAProxy rps, and Outpost p99
# <= 1.2 x HAProxy p99.
#
# Usage: bench/http/passthrough.sh            (from anywhere in the repo)
# Knobs (env): DURATION=10s CONNS=64 THREADS=2 ROUNDS=3 WARMUP=2s
#              BASE_PORT=18080 (uses BASE_PORT..BASE_PORT+3; CEILING=1 up to +6)
#              HAPROXY_HEADERS=same|none (see the HAProxy config below)
#              CEILING=1 also runs bench/http/rawproxy, the least pass-through
#              Go can do (no HTTP semantics at all): a measuring stick that
#              splits the gap to HAProxy into Go's cost and our HTTP stack's;
#              and rawproxy --shared ("rawpool"): the same plus what a real
#              proxy cannot leave out (a backend pool shared by all clients,
#              per-request deadlines, X-Forwarded-For and Via added).
#              BASE_PORT+5 for it. And bench/http/evproxy ("evloop", on
#              BASE_PORT+6): rawpool's work (no deadlines) done by one
#              epoll loop per core instead of a goroutine per connection.
# Outpost runs without its access log (--access-log=false), as HAProxy runs
# here without logging.
# Needs: go, wrk and haproxy (Debian packages; installed with apt-get when
# missing and running as root).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
BASE_PORT=${BASE_PORT:-18080}
CEILING=${CEILING:-0}
HAPROXY_HEADERS=${HAPROXY_HEADERS:-same}

OUTPOST_ADDR=127.0.0.1:$BASE_PORT
HAPROXY_ADDR=127.0.0.1:$((BASE_PORT + 1))
B1=127.0.0.1:$((BASE_PORT + 2))
B2=127.0.0.1:$((BASE_PORT + 3))
RAW_ADDR=127.0.0.1:$((BASE_PORT + 4))
RAWPOOL_ADDR=127.0.0.1:$((BASE_PORT + 5))
EVLOOP_ADDR=127.0.0.1:$((BASE_PORT + 6))

cd "$(dirname "$0")/../.."
WORK=$(mktemp -d /tmp/outpost-passthrough.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

. bench/lib.sh
need wrk wrk
need haproxy haproxy

echo "building ..." >&2
go build -o /tmp/outpost ./cmd/outpost
go build -o "$WORK/backend" ./bench/http/backend
[ "$CEILING" = 1 ] && go build -o "$WORK/rawproxy" ./bench/http/rawproxy
[ "$CEILING" = 1 ] && go build -o "$WORK/evproxy" ./bench/http/evproxy
if ! /tmp/outpost help proxy >/dev/null 2>&1; then
	echo "passthrough: 'outpost proxy' is not available in this build" >&2
	exit 1
fi

wait_port() { # addr
	for _ in $(seq 1 100); do
		if curl -s -o /dev/null "http://$1/"; then return 0; fi
		sleep 0.1
	done
	echo "passthrough: nothing answers on $1" >&2
	exit 1
}

"$WORK/backend" --listen "$B1" 2>"$WORK/b1.log" & PIDS+=($!)
BACKEND_PIDS=($!)
"$WORK/backend" --listen "$B2" 2>"$WORK/b2.log" & PIDS+=($!)
BACKEND_PIDS+=($!)
wait_port "$B1"
wait_port "$B2"

/tmp/outpost proxy --listen "$OUTPOST_ADDR" --origin "http://$B1" --origin "http://$B2" \
	--policy round_robin --no-cache --access-log=false >"$WORK/outpost.log" 2>&1 & PIDS+=($!)
OUTPOST_PID=$!

# HAPROXY_HEADERS=same (default): HAProxy does the forwarding work
# Outpost does on every request — client-sent X-Forwarded-*, Forwarded and
# X-Real-IP removed; X-Forwarded-For, -Host, -Proto, X-Request-ID and Via
# set; Via on the response — so both send the backends the same fields.
# HAPROXY_HEADERS=none: HAProxy forwards requests as they came, as in its
# bare default configuration.
HAPROXY_FORWARDING=""
if [ "$HAPROXY_HEADERS" = same ]; then
	HAPROXY_FORWARDING=$(cat <<'EOH'
	http-request del-header X-Forwarded- -m beg
	http-request del-header X_Forwarded_ -m beg
	http-request del-header Forwarded
	http-request del-header X-Real-IP
	option forwardfor
	http-request set-header X-Forwarded-Host %[req.hdr(host)]
	http-request set-header X-Forwarded-Proto http
	unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
	unique-id-header X-Request-ID
	http-request set-header Via "1.1 haproxy"
	http-response add-header Via "1.1 haproxy"
EOH
)
fi
cat >"$WORK/haproxy.cfg" <<EOF
global
	maxconn 4096
defaults
	mode http
	option http-keep-alive
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	timeout http-keep-alive 30s
frontend fe
	bind $HAPROXY_ADDR
	default_backend be
$HAPROXY_FORWARDING
backend be
	balance roundrobin
	http-reuse always
	server b1 $B1
	server b2 $B2
EOF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!)
HAPROXY_PID=$!

wait_port "$OUTPOST_ADDR"
wait_port "$HAPROXY_ADDR"
TARGETS="outpost haproxy"
if [ "$CEILING" = 1 ]; then
	"$WORK/rawproxy" --listen "$RAW_ADDR" --b1 "$B1" --b2 "$B2" 2>"$WORK/raw.log" & PIDS+=($!)
	RAW_PID=$!
	wait_port "$RAW_ADDR"
	"$WORK/rawproxy" --shared --listen "$RAWPOOL_ADDR" --b1 "$B1" --b2 "$B2" 2>"$WORK/rawpool.log" & PIDS+=($!)
	RAWPOOL_PID=$!
	wait_port "$RAWPOOL_ADDR"
	"$WORK/evproxy" --listen "$EVLOOP_ADDR" --b1 "$B1" --b2 "$B2" 2>"$WORK/evloop.log" & PIDS+=($!)
	EVLOOP_PID=$!
	wait_port "$EVLOOP_ADDR"
	TARGETS="outpost haproxy raw rawpool evloop"
fi

# run_wrk URL -> "rps p99_ms requests"
run_wrk() {
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" | awk '
		function ms(v) {
			if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
			if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
			if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
			if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
			return v
		}
		/Requests\/sec:/ { rps = $2 }
		/ requests in / { n = $1 }
		$1 == "99%" { p99 = ms($2) }
		/Non-2xx or 3xx responses:/ { bad += $NF }
		/Socket errors:/ { errs = $0 }
		END {
			if (bad > 0) printf "warning: %d non-2xx responses\n", bad > "/dev/stderr"
			if (errs != "") print "warning: " errs > "/dev/stderr"
			printf "%.0f %.3f %d\n", rps, p99, n
		}'
}

echo "warm-up ($WARMUP each) ..." >&2
wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://$OUTPOST_ADDR/" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://$HAPROXY_ADDR/" >/dev/null
if [ "$CEILING" = 1 ]; then
	wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://$RAW_ADDR/" >/dev/null
	wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://$RAWPOOL_ADDR/" >/dev/null
	wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://$EVLOOP_ADDR/" >/dev/null
fi

# CPU per request (user + system, from /proc): the proxy's own cost, and
# what the backends spend per request behind it.
printf '%-6s %-8s %12s %10s %14s %16s\n' round target 'requests/s' 'p99 ms' 'proxy us/req' 'backends us/req'
o_rps=0 o_p99=0 h_rps=0 h_p99=0 o_cpu=0 h_cpu=0 o_bcpu=0 h_bcpu=0 r_rps=0 r_p99=0 r_cpu=0 s_rps=0 s_p99=0 s_cpu=0 e_rps=0 e_p99=0 e_cpu=0
for r in $(seq 1 "$ROUNDS"); do
	for target in $TARGETS; do
		case $target in
		outpost) addr=$OUTPOST_ADDR pid=$OUTPOST_PID ;;
		haproxy) addr=$HAPROXY_ADDR pid=$HAPROXY_PID ;;
		raw) addr=$RAW_ADDR pid=$RAW_PID ;;
		rawpool) addr=$RAWPOOL_ADDR pid=$RAWPOOL_PID ;;
		evloop) addr=$EVLOOP_ADDR pid=$EVLOOP_PID ;;
		esac
		p0=$(cpu_ms "$pid") b0=$(cpu_ms "${BACKEND_PIDS[@]}")
		read -r rps p99 n < <(run_wrk "http://$addr/")
		cpu=$(us_per_req "$p0" "$(cpu_ms "$pid")" "$n") bcpu=$(us_per_req "$b0" "$(cpu_ms "${BACKEND_PIDS[@]}")" "$n")
		printf '%-6s %-8s %12s %10s %14s %16s\n' "$r" "$target" "$rps" "$p99" "$cpu" "$bcpu"
		if [ "$target" = outpost ]; then
			o_rps=$(awk -v a="$o_rps" -v b="$rps" 'BEGIN{print a+b}')
			o_p99=$(awk -v a="$o_p99" -v b="$p99" 'BEGIN{print a+b}')
			o_cpu=$(awk -v a="$o_cpu" -v b="$cpu" 'BEGIN{print a+b}')
			o_bcpu=$(awk -v a="$o_bcpu" -v b="$bcpu" 'BEGIN{print a+b}')
		elif [ "$target" = raw ]; then
			r_rps=$(awk -v a="$r_rps" -v b="$rps" 'BEGIN{print a+b}')
			r_p99=$(awk -v a="$r_p99" -v b="$p99" 'BEGIN{print a+b}')
			r_cpu=$(awk -v a="$r_cpu" -v b="$cpu" 'BEGIN{print a+b}')
		elif [ "$target" = rawpool ]; then
			s_rps=$(awk -v a="$s_rps" -v b="$rps" 'BEGIN{print a+b}')
			s_p99=$(awk -v a="$s_p99" -v b="$p99" 'BEGIN{print a+b}')
			s_cpu=$(awk -v a="$s_cpu" -v b="$cpu" 'BEGIN{print a+b}')
		elif [ "$target" = evloop ]; then
			e_rps=$(awk -v a="$e_rps" -v b="$rps" 'BEGIN{print a+b}')
			e_p99=$(awk -v a="$e_p99" -v b="$p99" 'BEGIN{print a+b}')
			e_cpu=$(awk -v a="$e_cpu" -v b="$cpu" 'BEGIN{print a+b}')
		else
			h_rps=$(awk -v a="$h_rps" -v b="$rps" 'BEGIN{print a+b}')
			h_p99=$(awk -v a="$h_p99" -v b="$p99" 'BEGIN{print a+b}')
			h_cpu=$(awk -v a="$h_cpu" -v b="$cpu" 'BEGIN{print a+b}')
			h_bcpu=$(awk -v a="$h_bcpu" -v b="$bcpu" 'BEGIN{print a+b}')
		fi
	done
done

awk -v or="$o_rps" -v op="$o_p99" -v hr="$h_rps" -v hp="$h_p99" -v n="$ROUNDS" \
	-v oc="$o_cpu" -v hc="$h_cpu" -v ob="$o_bcpu" -v hb="$h_bcpu" \
	-v rr="$r_rps" -v rp="$r_p99" -v rc="$r_cpu" -v sr="$s_rps" -v sp="$s_p99" -v sc="$s_cpu" \
	-v er="$e_rps" -v ep="$e_p99" -v ec="$e_cpu" \
	-v d="$DURATION" -v c="$CONNS" -v t="$THREADS" -v hh="$HAPROXY_HEADERS" 'BEGIN {
	printf "\nmean of %d interleaved runs (wrk -t%s -c%s -d%s, keep-alive, 1 KiB bodies, 2 backends, round robin, HAProxy forwarding headers: %s)\n", n, t, c, d, hh
	printf "outpost: %10.0f requests/s   p99 %8.3f ms   CPU %5.1f us/request (backends %5.1f)\n", or/n, op/n, oc/n, ob/n
	printf "haproxy: %10.0f requests/s   p99 %8.3f ms   CPU %5.1f us/request (backends %5.1f)\n", hr/n, hp/n, hc/n, hb/n
	if (rr > 0) printf "raw Go:  %10.0f requests/s   p99 %8.3f ms   CPU %5.1f us/request (bench/http/rawproxy: no HTTP semantics, a measuring stick)\n", rr/n, rp/n, rc/n
	if (sr > 0) printf "rawpool: %10.0f requests/s   p99 %8.3f ms   CPU %5.1f us/request (rawproxy --shared: + shared backend pool, deadlines, XFF and Via)\n", sr/n, sp/n, sc/n
	if (er > 0) printf "evloop:  %10.0f requests/s   p99 %8.3f ms   CPU %5.1f us/request (bench/http/evproxy: rawpool without deadlines, one epoll loop per core)\n", er/n, ep/n, ec/n
	printf "ratio outpost/haproxy: requests/s %.2f (target >= 1.00), p99 %.2f (target <= 1.20)\n", or/hr, op/hp
}'
