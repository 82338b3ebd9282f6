#!/usr/bin/env bash
# make chaos: the long runs of the reliability suite, which stop by
# themselves. CHAOS_TIME (default 10m) is shared among the parts: a third for
# the simulation of the protocol in virtual time, a third for OS processes on
# MinIO and Ceph RGW through fault proxies (a quarter each for plain and queue
# locks), a third for the distributed MinIO (half each for plain and queue
# locks). Starting the servers and the calm at the end of each run
# come on top. Ends with one "chaos:" line per part, and exits non-zero if
# any part failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# seconds DURATION: 90, 90s, 10m, 1h, 1m30s -> seconds.
seconds() {
	local d="$1" total=0 n unit
	[[ "$d" =~ ^[0-9]+$ ]] && d="${d}s"
	while [[ -n "$d" ]]; do
		if ! [[ "$d" =~ ^([0-9]+)([hms])(.*)$ ]]; then
			echo "chaos.sh: CHAOS_TIME=$1: want a duration such as 3m, 90s or 1h" >&2
			exit 2
		fi
		n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}" d="${BASH_REMATCH[3]}"
		case "$unit" in
		h) total=$((total + n * 3600)) ;;
		m) total=$((total + n * 60)) ;;
		s) total=$((total + n)) ;;
		esac
	done
	echo "$total"
}

total="$(seconds "${CHAOS_TIME:-10m}")"
if ((total < 120)); then
	echo "chaos.sh: CHAOS_TIME must be at least 2m (each part needs 10s or more)" >&2
	exit 2
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0

echo "chaos.sh: simulation for $((total / 3))s" >&2
(cd "$root" && OBJSYNC_SIM_TIME="$((total / 3))s" go test -count=1 -timeout 0 -v -run '^TestSimulation$' .) 2>&1 | tee -a "$log" || status=1

echo "chaos.sh: processes on MinIO and Ceph RGW for $((total / 12))s each per kind of lock" >&2
OBJSYNC_CHAOS_TIME="$((total / 12))s" OBJSYNC_CHAOS_STORES=minio,ceph OBJSYNC_CHAOS_KINDS=plain,queue \
	"$here/test.sh" -timeout 0 -v -run '^TestChaosProcs$' 2>&1 | tee -a "$log" || status=1

echo "chaos.sh: distributed MinIO for $((total / 6))s per kind of lock" >&2
OBJSYNC_CHAOS_TIME="$((total / 6))s" OBJSYNC_CHAOS_KINDS=plain,queue \
	"$here/test.sh" -timeout 0 -v -run '^TestChaosDistributed$' 2>&1 | tee -a "$log" || status=1

echo
grep '^chaos: ' "$log"
if ((status != 0)); then
	echo "chaos.sh: FAILED (see above)" >&2
fi
exit "$status"
