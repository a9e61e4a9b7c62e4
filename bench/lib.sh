# lib.sh — shell helpers shared by the bench/ scripts (sourced, not run).

# need COMMAND PACKAGE: make sure COMMAND exists, installing the Debian
# PACKAGE with apt-get when running as root; exit with a hint otherwise.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing $2 ..." >&2
		apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; }
	fi
	command -v "$1" >/dev/null 2>&1 || { echo "$(basename "$0"): $1 not found (apt-get install $2)" >&2; exit 1; }
}

# cpu_ms PID...: CPU time (user + system, all threads) in milliseconds that
# the processes and their direct children (nginx's workers) have used so
# far. Sampled around a run, it gives a server's CPU cost per request,
# which does not depend on how the load generator shares the machine.
cpu_ms() {
	local t=0 p kids
	kids=$(for q in "$@"; do pgrep -P "$q" || true; done)
	for p in "$@" $kids; do
		[ -r "/proc/$p/stat" ] || continue
		# Fields after the ")" that closes comm: utime is the 12th, stime the 13th.
		t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo $((t * 1000 / $(getconf CLK_TCK)))
}

# us_per_req MS_BEFORE MS_AFTER REQUESTS: CPU microseconds per request.
us_per_req() {
	awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1000 / n; else print "-" }'
}
