// Package procid identifies a process well enough for another process on
// the same machine to know that it has ended: the host name, the kernel's
// boot id, the pid and time namespaces, the pid, and the process's start
// time, and optionally a process group or a cgroup that its work runs in.
// On Linux these come from /proc; elsewhere a process has no
// identity, and no process is ever judged ended.
package procid

import (
	"math"
	"path"
	"strings"
)

// ID identifies a process. The zero ID identifies none.
type ID struct {
	// Host is the host name, which tells apart machines cloned from one
	// memory snapshot (which share a boot id) if they were renamed.
	Host string
	// Boot is the kernel's boot id: a new one at every boot.
	Boot string
	// PIDNS names the pid namespace that PID belongs to, as the link
	// /proc/self/ns/pid reads, for example "pid:[4026531836]".
	PIDNS string
	// TimeNS names the time namespace the process read its Start in
	// (/proc/self/ns/time; empty on kernels without them): /proc shows
	// start times shifted by the reader's boot-time offset.
	TimeNS string
	PID    int
	// Start is when the process started, in clock ticks after boot
	// (field 22 of /proc/PID/stat): with Boot and PID, it tells the
	// process apart from a later one given the same pid.
	Start uint64
	// Group, if not 0, is a process group that the process's work runs
	// in: it has ended only once no process is left in it.
	Group int
	// Cgroup, if not empty, is a cgroup v2 that the process's work runs
	// in, as a path from the root of the hierarchy of the cgroup namespace
	// CgroupNS (/proc/self/ns/cgroup), and CgroupID its id (the inode
	// number of its directory, unique on a boot): the process has ended
	// only once no process is left in it.
	Cgroup, CgroupNS string
	CgroupID         uint64
}

// Known reports whether id identifies a process.
// A pid or group beyond what the kernel's pid_t holds is not: kill(2)
// would take it for another.
func (id ID) Known() bool {
	return id.Boot != "" && id.PIDNS != "" && id.PID > 0 && id.PID <= math.MaxInt32 && id.Start > 0 &&
		id.Group >= 0 && id.Group <= math.MaxInt32 && (id.Cgroup == "" || id.CgroupNS != "" && id.CgroupID != 0 && validCgroup(id.Cgroup))
}

// Self returns the identity of this process; the zero ID where it has
// none.
func Self() ID { return self() }

// Of returns the identity of the running process pid of this namespace;
// the zero ID if it has none, or there is no such process.
func Of(pid int) ID {
	if pid == Self().PID {
		return Self()
	}
	return of(pid)
}

// Ended reports whether the process that id identifies has surely ended:
// id is known, recorded on this machine (host name and boot id) since its
// last boot and in the pid and time namespaces of this process, and no
// process with its pid and start time runs (none has its pid, or one that
// started at another time, or one whose every thread has exited and that
// is not yet reaped), nor any process in its Group (kill(-Group, 0)
// answers ESRCH) or its Cgroup (of this process's cgroup namespace:
// "populated 0", or gone from a hierarchy that nothing is mounted over).
// Whenever it cannot be
// sure (another machine, boot or namespace, a /proc that hides other
// users' processes), it returns false. A process restored from a
// checkpoint (CRIU) has a new start time: it counts as another.
func Ended(id ID) bool {
	me := Self()
	if !here(id, me) {
		return false
	}
	switch {
	case id.PID == me.PID && id.Start == me.Start:
		return false // this process
	case id.PID != me.PID && !ended(id):
		return false
	}
	return (id.Group <= 0 || groupEnded(id.Group)) &&
		(id.Cgroup == "" || id.CgroupNS == me.CgroupNS && cgroupEmpty(id.Cgroup, id.CgroupID))
}

// validCgroup reports whether rel is a clean absolute path, as a cgroup
// path relative to the hierarchy's root is: one read from a lock object
// must not lead outside the hierarchy.
func validCgroup(rel string) bool {
	return strings.HasPrefix(rel, "/") && path.Clean(rel) == rel && !strings.ContainsRune(rel, 0)
}

// Running reports whether the process that id identifies surely runs: id
// is known, recorded on this machine since its last boot and in the pid
// and time namespaces of this process, and a process with its pid and
// start time runs, one of whose threads at least has not exited. Its Group
// and Cgroup do not count. It returns false whenever it cannot be sure.
func Running(id ID) bool {
	me := Self()
	return here(id, me) && (id.PID == me.PID && id.Start == me.Start || running(id))
}

// here reports whether id and this process's identity me are both known,
// and id was recorded on this machine, since its last boot, in the pid and
// time namespaces of this process.
func here(id, me ID) bool {
	return id.Known() && me.Known() && id.Host == me.Host && id.Boot == me.Boot && id.PIDNS == me.PIDNS && id.TimeNS == me.TimeNS
}
