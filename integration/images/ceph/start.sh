#!/bin/bash
# Starts a one-node Ceph cluster for tests: one monitor, one in-memory OSD and
# the RADOS gateway (S3) on port 7480, with an S3 user whose keys come from
# the environment. No manager, no authentication, no disks, no privileges.
#
# Every container start wipes the previous state: the OSD keeps objects in
# memory (memstore), so after a container restart a fresh cluster is the only
# consistent one. To restart the server the way a real deployment does, keep
# the container running and restart only the gateway, which holds no data:
#
#   docker kill --signal USR1 CONTAINER   stop radosgw (SIGTERM, see stop_gateway)
#   docker kill --signal USR2 CONTAINER   start it again: same port, config, user
#
# The monitor and the OSD keep running, so every object and bucket is still
# there when the gateway answers again. integration/servers.go does this for
# S3Server.Stop and Start.
#
# Environment:
#   RGW_ACCESS_KEY, RGW_SECRET_KEY  keys of the S3 user (required in tests)
#   RGW_USER                        its user id (default objsync)

# Functions below are called through traps and wait_for, which shellcheck
# takes for unreachable code.
# shellcheck disable=SC2317
set -euo pipefail

access_key="${RGW_ACCESS_KEY:-objsync}"
secret_key="${RGW_SECRET_KEY:-objsync-secret}"
user="${RGW_USER:-objsync}"

# All state in one folder, writable and wiped at each start: the imported
# root filesystem has no /run/ceph and no /var/lib/ceph layout.
root=/var/lib/objsync-ceph
rm -rf "$root"
mkdir -p "$root"/{run,log,mon/a,osd/0,rgw}

say() { printf 'objsync-ceph: %s\n' "$*"; }

# On a failure, show why in the container's log (the daemons log to files).
dump_logs() {
	say "last lines of the Ceph logs:" >&2
	tail -n 30 "$root"/log/*.log >&2 || true
}
trap dump_logs ERR

# Process ids of the daemons. rgw_pid is empty while the gateway is stopped.
mon_pid='' osd_pid='' rgw_pid=''

# docker stop sends SIGTERM to this script (PID 1); stop the daemons and exit
# at once instead of waiting for Docker's SIGKILL. SIGKILL for the daemons:
# the next container start wipes their state anyway.
stop() {
	# Unquoted: an empty rgw_pid (gateway stopped) drops out.
	# shellcheck disable=SC2086
	kill -KILL $mon_pid $osd_pid $rgw_pid 2>/dev/null || true
	wait || true
	exit 0
}
trap stop TERM INT
# Until the gateway first starts, USR1 and USR2 are ignored. They need a
# trap from the start all the same: bash dies of a signal it does not trap.
trap 'say "still starting: signal ignored"' USR1 USR2

# What USR1 (stopped) and USR2 (running) ask of the gateway. Their traps
# only set this; the supervision loop at the end acts on it. Acting in the
# trap itself would go wrong when the other signal arrives while it runs
# (a start asked for while a stop still waits for radosgw to exit).
gateway_wanted=running

# pause SECONDS: sleep without starting a process (the loop below ticks ten
# times a second), by reading with a timeout from a FIFO this script holds
# open at both ends, so that nothing ever comes. A trapped signal ends the
# read early, so USR1 and USR2 are acted on at once.
mkfifo "$root/tick"
exec 4<>"$root/tick"
pause() { read -r -t "$1" -u 4 _ || true; }

# Started again on USR2, the gateway needs no readiness wait here: the user
# is already in RADOS, so its first HTTP answer means ready, and the test
# waits for that.
start_gateway() {
	say "starting gateway"
	radosgw -f -n client.rgw.a &
	rgw_pid=$!
}

# SIGTERM, as a service manager restarting the gateway sends: radosgw then
# drops its watches on the control objects. Killed (SIGKILL), it would leave
# them on the OSD for osd_client_watch_timeout (30 s), and every metadata
# change after the restart (a bucket creation, for one) would wait that long
# for the dead gateway's acknowledgement. Object reads and writes would not.
# Nothing is lost either way: the gateway answers a write only once the OSD
# has it. An idle gateway stops in about 0.2 s; one still running after
# 10 s is killed.
stop_gateway() {
	say "stopping gateway"
	kill -TERM "$rgw_pid" 2>/dev/null || true
	local deadline=$((SECONDS + 10))
	# bash reaps its children as they exit, so kill -0 fails once it is gone.
	while kill -0 "$rgw_pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			say "gateway still running after 10 s; killing it" >&2
			kill -KILL "$rgw_pid" 2>/dev/null || true
			break
		fi
		pause 0.05
	done
	wait "$rgw_pid" 2>/dev/null || true
	rgw_pid=''
	say "gateway stopped"
}

# check_running PID WHAT: exit (and so stop the container) if the daemon
# PID has exited.
check_running() {
	if kill -0 "$1" 2>/dev/null; then
		return 0
	fi
	local status=0
	wait "$1" || status=$?
	say "the $2 exited (status $status); stopping" >&2
	dump_logs
	exit 1
}

# wait_for WHAT SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_for() {
	local what="$1" deadline=$((SECONDS + $2))
	shift 2
	until "$@" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			say "timed out waiting for $what" >&2
			return 1
		fi
		sleep 0.1
	done
}

fsid="$(cat /proc/sys/kernel/random/uuid)"
mon_addrs='[v2:127.0.0.1:3300,v1:127.0.0.1:6789]'

cat >/etc/ceph/ceph.conf <<CONF
[global]
fsid = $fsid
# The one monitor, on loopback inside the container, speaking both the v2
# and the v1 protocol (as in the monitor map below).
mon_host = $mon_addrs
# The OSD binds to loopback too: nothing outside the container talks to it.
public_addr = 127.0.0.1
# No cephx: a throwaway cluster inside one container needs no keys, and
# keyring files would have to be made and shared between daemons.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
keyring = /dev/null
# Without auth the monitor session must still agree on a mode: clients
# default to "secure crc" and radosgw then waits forever for a secure
# session. crc is what a cluster without auth offers.
ms_mon_client_mode = crc
# Writable places for sockets and logs (the image has no /run/ceph).
run_dir = $root/run
admin_socket = $root/run/\$cluster-\$name.asok
log_file = $root/log/\$cluster-\$name.log
# One OSD: pools of one replica, placement across OSDs rather than hosts,
# and size one explicitly allowed (the monitor refuses it otherwise).
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
# Few placement groups, fixed: the gateway makes about seven pools and the
# autoscaler lives in the manager, which is not run.
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
# Fast monitor rounds: the gateway creates its pools one round at a time,
# and the default (1 s per round) makes the start take many seconds.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
# The container's disk may be nearly full on a developer machine; the
# monitor must not refuse to start for that (its store is tiny here).
mon_data_avail_crit = 1

[mon]
mon_data = $root/mon/\$id

[osd]
osd_data = $root/osd/\$id
# Objects in memory: no disk, no block device, starts at once. 1 GiB is
# plenty for lock objects and keeps memory use bounded.
osd_objectstore = memstore
memstore_device_bytes = 1073741824

[client.rgw.a]
rgw_data = $root/rgw
# The S3 endpoint the tests publish.
rgw_frontends = beast port=7480
CONF

say "starting monitor"
monmaptool --create --addv a "$mon_addrs" --fsid "$fsid" "$root/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$root/monmap" --keyring /dev/null
ceph-mon -f -i a &
mon_pid=$!

say "starting OSD"
osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
osd_id="$(timeout 60 ceph osd new "$osd_uuid")"
ceph-osd -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
ceph-osd -f -i "$osd_id" &
osd_pid=$!
osd_up() { timeout 10 ceph osd stat | grep -q ' 1 up'; }
wait_for "the OSD" 60 osd_up

# The user exists before the gateway answers, so that "port 7480 answers"
# means "ready for signed requests".
say "creating S3 user $user"
timeout 120 radosgw-admin user create --uid="$user" --display-name="$user" \
	--access-key="$access_key" --secret-key="$secret_key" >/dev/null

# From now on the gateway can be stopped and started again (see the top).
# The traps are set before it answers: the test may signal right after its
# first HTTP answer.
trap 'gateway_wanted=stopped' USR1
trap 'gateway_wanted=running' USR2
start_gateway

http_answers() {
	local line
	exec 3<>/dev/tcp/127.0.0.1/7480 || return 1
	printf 'GET / HTTP/1.0\r\n\r\n' >&3
	read -r -t 2 line <&3 || true
	exec 3<&-
	[[ "$line" == HTTP/* ]]
}
wait_for "the gateway on port 7480" 120 http_answers
say "ready: $(radosgw --version | head -n 1)"

# Run as long as the daemons run: if the monitor or the OSD dies, or the
# gateway dies without being told to, the container stops and the test sees
# it instead of hanging. Meanwhile stop and start the gateway as asked.
while :; do
	# After acting, look again at once: the other signal may have come
	# while stop_gateway waited.
	if [[ "$gateway_wanted" == running && -z "$rgw_pid" ]]; then
		start_gateway
		continue
	elif [[ "$gateway_wanted" == stopped && -n "$rgw_pid" ]]; then
		stop_gateway
		continue
	fi
	check_running "$mon_pid" monitor
	check_running "$osd_pid" OSD
	if [[ -n "$rgw_pid" ]]; then
		check_running "$rgw_pid" gateway
	fi
	pause 0.1
done
