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
