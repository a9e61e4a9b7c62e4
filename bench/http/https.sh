#!/usr/bin/env bash
# https.sh — HTTPS cache-HIT scenario: Outpost (`outpost serve`, internal CA
# mode, cached routes) against nginx (proxy_cache) serving the SAME
# certificate and key, same two local origins (1 KiB and 100 KiB bodies).
# Keep-alive; HTTP/1.1 with wrk and HTTP/2 with h2load; runs interleaved
# (outpost, nginx, outpost, ...) so machine noise hits both alike. Then the
# cost of full TLS handshakes: wrk with "Connection: close", so every request
# is a new connection and a full handshake (wrk does not resume sessions).
# Prints requests/s per run, the medians (robust to a noisy shared
# machine), and the ratios of the medians.
# Target: Outpost requests/s >= nginx requests/s for HTTPS hits.
#
# Usage: bench/http/https.sh            (from anywhere in the repo)
# Knobs (env): DURATION=10 (seconds) CONNS=64 THREADS=2 ROUNDS=5 WARMUP=2
#              STREAMS=10 (h2load -m) BASE_PORT=18440 (uses BASE_PORT..+6)
#              SIZES="1k 100k" PROTOS="h1 h2"
# Needs: go, curl, wrk, h2load (nghttp2-client) and nginx (Debian packages;
# installed with apt-get when missing and running as root).
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-2}
STREAMS=${STREAMS:-10}
BASE_PORT=${BASE_PORT:-18440}
SIZES=${SIZES:-"1k 100k"}
PROTOS=${PROTOS:-"h1 h2"}

OUTPOST_TLS=127.0.0.1:$BASE_PORT
NGINX_TLS=127.0.0.1:$((BASE_PORT + 1))
B1=127.0.0.1:$((BASE_PORT + 2))
B100=127.0.0.1:$((BASE_PORT + 3))
OUTPOST_HTTP=127.0.0.1:$((BASE_PORT + 4))
OUTPOST_REDIRECT=127.0.0.1:$((BASE_PORT + 5))
OUTPOST_ADMIN=127.0.0.1:$((BASE_PORT + 6))
NAME=bench.test

cd "$(dirname "$0")/../.."
WORK=$(mktemp -d /tmp/outpost-https.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	if [ -f "$WORK/nginx/nginx.pid" ]; then
		kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

. bench/lib.sh
need wrk wrk
need h2load nghttp2-client
need nginx nginx
need curl curl

echo "building ..." >&2
go build -o "$WORK/outpost" ./cmd/outpost
go build -o "$WORK/backend" ./bench/http/backend

wait_http() { # url
	for _ in $(seq 1 100); do
		if curl -s -o /dev/null "$1"; then return 0; fi
		sleep 0.1
	done
	echo "https: nothing answers on $1" >&2
	exit 1
}

"$WORK/backend" --listen "$B1" --size 1024 2>"$WORK/b1.log" & PIDS+=($!)
"$WORK/backend" --listen "$B100" --size 102400 2>"$WORK/b100.log" & PIDS+=($!)
wait_http "http://$B1/"
wait_http "http://$B100/"

# --- Outpost: one node, internal CA, two cached routes -----------------------
mkdir -p "$WORK/data"
cat >"$WORK/outpost.yaml" <<EOF
node: bench
data_dir: $WORK/data
log: {level: warn}
nodes:
  - {name: bench, ipv4: 127.0.0.1}
edge:
  listen: $OUTPOST_HTTP
  access_log: false
admin:
  listen: $OUTPOST_ADMIN
tls:
  enabled: true
  mode: internal
  listen: $OUTPOST_TLS
  http_listen: $OUTPOST_REDIRECT
  names: [$NAME]
  internal:
    root_export: $WORK/root.pem
routes:
  - name: small
    path_prefix: /1k
    upstream: http://$B1
    cache: {default_ttl: 1h}
  - name: large
    path_prefix: /100k
    upstream: http://$B100
    cache: {default_ttl: 1h}
EOF
"$WORK/outpost" check-config "$WORK/outpost.yaml" >/dev/null
"$WORK/outpost" serve --config "$WORK/outpost.yaml" >"$WORK/outpost.log" 2>&1 & PIDS+=($!)
OUTPOST_PID=$!

for _ in $(seq 1 100); do
	[ -s "$WORK/root.pem" ] && curl -s -o /dev/null --cacert "$WORK/root.pem" \
		--resolve "$NAME:${OUTPOST_TLS##*:}:127.0.0.1" "https://$NAME:${OUTPOST_TLS##*:}/1k" && break
	sleep 0.1
done
if ! curl -sf -o /dev/null --cacert "$WORK/root.pem" --resolve "$NAME:${OUTPOST_TLS##*:}:127.0.0.1" \
	"https://$NAME:${OUTPOST_TLS##*:}/1k"; then
	echo "https: outpost serve does not answer HTTPS on $OUTPOST_TLS (is tls: wired into serve?)" >&2
	tail -20 "$WORK/outpost.log" >&2 || true
	exit 1
fi

# The very certificate Outpost serves, for nginx.
CRT=$(find "$WORK/data/tls/certificates" -name "$NAME.crt" | head -1)
KEY=$(find "$WORK/data/tls/certificates" -name "$NAME.key" | head -1)
[ -n "$CRT" ] && [ -n "$KEY" ] || { echo "https: certificate for $NAME not found in storage" >&2; exit 1; }

# --- nginx: same cert, proxy_cache, HTTP/1.1 and HTTP/2 ------------------------
mkdir -p "$WORK/nginx/cache" "$WORK/nginx/tmp"
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$USER_LINE
worker_processes $(nproc);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/tmp;
	proxy_temp_path $WORK/nginx/tmp;
	fastcgi_temp_path $WORK/nginx/tmp;
	uwsgi_temp_path $WORK/nginx/tmp;
	scgi_temp_path $WORK/nginx/tmp;
	proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=hot:10m max_size=1g inactive=1h;
	keepalive_requests 1000000;
	keepalive_timeout 120s;
	upstream small { server $B1; keepalive 64; }
	upstream large { server $B100; keepalive 64; }
	server {
		listen $NGINX_TLS ssl http2;
		server_name $NAME;
		ssl_certificate $CRT;
		ssl_certificate_key $KEY;
		ssl_protocols TLSv1.2 TLSv1.3;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		proxy_cache hot;
		proxy_cache_valid 200 1h;
		add_header X-Cache \$upstream_cache_status;
		location /1k { proxy_pass http://small; }
		location /100k { proxy_pass http://large; }
	}
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon on;'
for _ in $(seq 1 50); do [ -s "$WORK/nginx/nginx.pid" ] && break; sleep 0.1; done
NGINX_PID=$(cat "$WORK/nginx/nginx.pid")

# Warm both caches and check that the next request is a HIT.
for target in "$OUTPOST_TLS" "$NGINX_TLS"; do
	for path in /1k /100k; do
		url="https://$NAME:${target##*:}$path"
		curl -sf -o /dev/null --cacert "$WORK/root.pem" --resolve "$NAME:${target##*:}:127.0.0.1" "$url"
		xc=$(curl -sf -D - -o /dev/null --cacert "$WORK/root.pem" --resolve "$NAME:${target##*:}:127.0.0.1" "$url" |
			tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
		case "$xc" in
		HIT*) ;;
		*) echo "https: $url is not a cache HIT after warm-up (X-Cache: ${xc:-none})" >&2; exit 1 ;;
		esac
	done
done
echo "both servers verified: same certificate, cache HIT on /1k and /100k" >&2

# run_h1 URL [extra wrk args] -> "requests/s requests"
run_h1() {
	local url=$1
	shift
	wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$@" "$url" | awk '
		/Requests\/sec:/ { rps = $2 }
		/ requests in / { n = $1 }
		/Non-2xx or 3xx responses:/ { bad += $NF }
		END {
			if (bad > 0) printf "warning: %d non-2xx responses\n", bad > "/dev/stderr"
			printf "%.0f %d\n", rps, n
		}'
}

# run_h2 URL -> "requests/s requests". h2load leaves its 1 s warm-up out of
# its counts but the server's CPU includes it, so the requests are taken
# as the measured rate over warm-up and run.
run_h2() {
	h2load -t"$THREADS" -c"$CONNS" -m"$STREAMS" -D "$DURATION" --warm-up-time=1 "$1" 2>/dev/null | awk -v d="$DURATION" '
		/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^req\/s/) { v = $i; gsub(",", "", v); rps = v } }
		/^status codes:/ { if ($0 !~ / 0 5xx/) print "warning: " $0 > "/dev/stderr" }
		END { printf "%.0f %d\n", rps, rps * (d + 1) }'
}

echo "warm-up (${WARMUP}s each) ..." >&2
for target in "$OUTPOST_TLS" "$NGINX_TLS"; do
	wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "https://$target/1k" >/dev/null
done

declare -A VALS CPUS
# median VALUES... -> the median
median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# The server's CPU per request (user + system, from /proc; nginx's workers
# included) tells its own cost apart from how it shares the machine with
# the load generator.
printf '%-5s %-6s %-10s %-8s %12s %12s\n' round size scenario target 'requests/s' 'CPU us/req'
for r in $(seq 1 "$ROUNDS"); do
	for size in $SIZES; do
		for proto in $PROTOS; do
			for target in outpost nginx; do
				if [ "$target" = outpost ]; then addr=$OUTPOST_TLS pid=$OUTPOST_PID; else addr=$NGINX_TLS pid=$NGINX_PID; fi
				c0=$(cpu_ms "$pid")
				if [ "$proto" = h1 ]; then
					read -r rps n < <(run_h1 "https://$addr/$size")
				else
					read -r rps n < <(run_h2 "https://$addr/$size")
				fi
				cpu=$(us_per_req "$c0" "$(cpu_ms "$pid")" "$n")
				printf '%-5s %-6s %-10s %-8s %12s %12s\n' "$r" "$size" "$proto" "$target" "$rps" "$cpu"
				VALS[$size.$proto.$target]+=" $rps"
				CPUS[$size.$proto.$target]+=" $cpu"
			done
		done
	done
	for target in outpost nginx; do
		if [ "$target" = outpost ]; then addr=$OUTPOST_TLS pid=$OUTPOST_PID; else addr=$NGINX_TLS pid=$NGINX_PID; fi
		c0=$(cpu_ms "$pid")
		read -r hs n < <(run_h1 "https://$addr/1k" -H "Connection: close")
		cpu=$(us_per_req "$c0" "$(cpu_ms "$pid")" "$n")
		printf '%-5s %-6s %-10s %-8s %12s %12s\n' "$r" 1k handshake "$target" "$hs" "$cpu"
		VALS[hs.$target]+=" $hs"
		CPUS[hs.$target]+=" $cpu"
	done
done

printf '\nmedian of %d interleaved runs (%ss each, %d connections, %d threads; h2: %d streams/conn; cache HITs over TLS)\n' \
	"$ROUNDS" "$DURATION" "$CONNS" "$THREADS" "$STREAMS"
printf '%-22s %14s %14s %8s %18s\n' scenario 'outpost req/s' 'nginx req/s' ratio 'CPU us/req o / n'
row() { # label key
	local o n oc nc
	# shellcheck disable=SC2086
	o=$(median ${VALS[$2.outpost]})
	# shellcheck disable=SC2086
	n=$(median ${VALS[$2.nginx]})
	# shellcheck disable=SC2086
	oc=$(median ${CPUS[$2.outpost]})
	# shellcheck disable=SC2086
	nc=$(median ${CPUS[$2.nginx]})
	awk -v o="$o" -v n="$n" -v oc="$oc" -v nc="$nc" -v s="$1" \
		'BEGIN { printf "%-22s %14.0f %14.0f %8.2f %9.1f / %.1f\n", s, o, n, (n > 0 ? o/n : 0), oc, nc }'
}
for size in $SIZES; do
	for proto in $PROTOS; do
		row "$size $proto keep-alive" "$size.$proto"
	done
done
row "full TLS handshakes/s" hs
echo "(target: ratio >= 1.00 for keep-alive HTTPS hits)"
