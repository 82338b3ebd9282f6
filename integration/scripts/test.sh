#!/usr/bin/env bash
# Integration phase of "make test": makes sure a Docker engine runs, builds the
# local server images (only what changed), runs the integration module's
# tests against real MinIO, Ceph RGW, SeaweedFS and fake-gcs-server containers and an
# Azurite process (installed when missing), and removes any container the
# tests left behind, even when they fail.
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

label=objsync.test=1

remove_leftovers() {
	docker info >/dev/null 2>&1 || return 0
	local ids
	ids="$(docker ps -aq --filter "label=$label")"
	if [[ -n "$ids" ]]; then
		echo "test.sh: removing leftover test containers" >&2
		# shellcheck disable=SC2086 # one id per word
		docker rm -f $ids >/dev/null
	fi
	# The distributed MinIO's private networks, once their containers are gone.
	ids="$(docker network ls -q --filter "label=$label")"
	if [[ -n "$ids" ]]; then
		# shellcheck disable=SC2086 # one id per word
		docker network rm $ids >/dev/null
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

trap remove_leftovers EXIT
# Turn signals into an exit so that the EXIT trap runs for them too.
trap 'exit 130' INT
trap 'exit 143' TERM

phase ensure-docker "$here/ensure-docker.sh"
remove_leftovers # from a run that was killed before its trap ran
phase build-images "$here/build-images.sh"
# Azurite runs as a process, not in a container: installed once, then cached.
OBJSYNC_AZURITE="$(phase install-azurite "$here/install-azurite.sh")"
export OBJSYNC_AZURITE
phase go-test run_tests "$@"
