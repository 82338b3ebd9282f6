#!/usr/bin/env bash
# Makes sure a Docker engine answers. The integration tests start MinIO, Ceph
# RGW and fake-gcs-server in containers, so they need one.
#
# - engine answers: do nothing.
# - root on Debian: install docker.io if dockerd is missing, start dockerd in
#   the background and wait for it (CI machines and fresh developer machines
#   have the docker client but no engine running).
# - otherwise: explain what to install and fail.
set -euo pipefail

log_file="${OBJSYNC_DOCKERD_LOG:-/var/log/objsync-dockerd.log}"
wait_seconds="${OBJSYNC_DOCKERD_WAIT:-60}"

engine_answers() {
	docker info >/dev/null 2>&1
}

if command -v docker >/dev/null 2>&1 && engine_answers; then
	exit 0
fi

if [[ "$(id -u)" != 0 || ! -r /etc/debian_version ]]; then
	cat >&2 <<'MSG'
ensure-docker: no Docker engine answers ("docker info" fails), and this script
can only start one itself when it runs as root on Debian. Install Docker (on
Debian/Ubuntu: "apt-get install docker.io"; elsewhere Docker Engine or Docker
Desktop), start it, make sure your user can reach its socket (or set
DOCKER_HOST), then run "make test" again. The integration tests need it to run
MinIO, Ceph RGW and fake-gcs-server in local containers.
MSG
	exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
	echo "ensure-docker: installing docker.io (dockerd is missing)" >&2
	apt_log="$(mktemp)"
	# The package lists may be absent or stale on a fresh machine. apt's
	# output is shown only if it fails.
	if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io; } >"$apt_log" 2>&1; then
		cat "$apt_log" >&2
		echo "ensure-docker: could not install docker.io" >&2
		exit 1
	fi
	rm -f "$apt_log"
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
	# A pid file left by a dead engine makes dockerd refuse to start.
	rm -f /var/run/docker.pid
	mkdir -p "$(dirname "$log_file")"
	# setsid: the engine must outlive this script and its process group.
	setsid nohup dockerd >>"$log_file" 2>&1 </dev/null &
fi

for ((i = 0; i < wait_seconds * 2; i++)); do
	if engine_answers; then
		exit 0
	fi
	sleep 0.5
done

echo "ensure-docker: dockerd did not answer within ${wait_seconds}s; see $log_file:" >&2
tail -n 20 "$log_file" >&2 || true
exit 1
