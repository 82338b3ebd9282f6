#!/usr/bin/env bash
# Integration phase of "make test": makes sure a Docker engine runs, builds the
# local server images (only what changed), runs the integration module's
# tests against real MinIO, Ceph RGW, SeaweedFS and fake-gcs-server containers and an
# Azurite process (installed when missing), and removes the containers the
# tests left behind, even when they fail (only this run's: see run_id).
#
# Usage: test.sh [go test flags...]   e.g. test.sh -run TestS3Servers -v
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$(cd "$here/.." && pwd)"

# Ryuk (the reaper) would need an image from a registry: disabled, the tests
# and the cleanup below remove containers instead. The host override keeps
# testcontainers on loopback: this machine looks like a container to it
# (/.dockerenv), and it would otherwise dial the default gateway.
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1

# run_id PID: PID and its start time in clock ticks, which name one process
# for ever (a pid alone is reused); fails if no process has that pid.
run_id() {
	local pid="$1" stat
	stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
	stat="${stat##*) }" # fields from the 3rd on: the name may hold spaces
	# shellcheck disable=SC2086 # one field per word
	set -- $stat
	printf '%s.%s\n' "$pid" "${20}" # the 22nd field: start time
}

# This run's containers and networks are labelled objsync.test=RUN (the
# tests read OBJSYNC_TEST_RUN), so that two runs at once (a CI run and one by
# hand) never remove each other's servers.
OBJSYNC_TEST_RUN="$(run_id $$)"
export OBJSYNC_TEST_RUN

# ended LABEL: the run that labelled a container LABEL has ended. "1" is
# the label of tests run by hand without this script, and is removed as it
# always was.
ended() {
	local pid="${1%%.*}"
	[[ "$1" == 1 || "$(run_id "$pid" || true)" != "$1" ]]
}

# remove_leftovers all|mine: removes the test containers and networks of
# runs that have ended, or only this run's.
remove_leftovers() {
	docker info >/dev/null 2>&1 || return 0
	local kind id value containers=() networks=()
	for kind in ps network; do
		while read -r id value; do
			[[ -n "$id" ]] || continue
			if [[ "$value" == "$OBJSYNC_TEST_RUN" ]] || { [[ "$1" == all ]] && ended "$value"; }; then
				if [[ "$kind" == ps ]]; then containers+=("$id"); else networks+=("$id"); fi
			fi
		done < <(if [[ "$kind" == ps ]]; then
			docker ps -a --filter label=objsync.test --format '{{.ID}} {{.Label "objsync.test"}}'
		else
			docker network ls --filter label=objsync.test --format '{{.ID}} {{.Label "objsync.test"}}'
		fi)
	done
	if ((${#containers[@]} > 0)); then
		echo "test.sh: removing ${#containers[@]} leftover test containers" >&2
		docker rm -f "${containers[@]}" >/dev/null
	fi
	# The distributed MinIO's private networks, once their containers are gone.
	if ((${#networks[@]} > 0)); then
		docker network rm "${networks[@]}" >/dev/null
	fi
}

# phase NAME COMMAND...: run COMMAND and say how long it took.
phase() {
	local name="$1" start=$SECONDS status=0
	shift
	"$@" || status=$?
	echo "test.sh: $name took $((SECONDS - start))s$( ((status == 0)) || echo " and failed (exit $status)")" >&2
	return "$status"
}

run_tests() (
	cd "$module"
	go test -count=1 -timeout 45m "$@" ./...
)

trap 'remove_leftovers mine' EXIT
# Turn signals into an exit so that the EXIT trap runs for them too.
trap 'exit 130' INT
trap 'exit 143' TERM

phase ensure-docker "$here/ensure-docker.sh"
remove_leftovers all # of runs killed before their trap ran
phase build-images "$here/build-images.sh"
# Azurite runs as a process, not in a container: installed once, then cached.
OBJSYNC_AZURITE="$(phase install-azurite "$here/install-azurite.sh")"
export OBJSYNC_AZURITE
phase go-test run_tests "$@"
