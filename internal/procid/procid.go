// Package procid identifies a process well enough for another process on
// the same machine to know that it has ended: the kernel's boot id, the
// pid namespace, the pid, and the process's start time. On Linux these
// come from /proc; elsewhere a process has no identity, and no process is
// ever judged ended.
package procid

// ID identifies a process. The zero ID identifies none.
type ID struct {
	// Boot is the kernel's boot id: a new one at every boot.
	Boot string
	// PIDNS names the pid namespace that PID belongs to, as the link
	// /proc/self/ns/pid reads, for example "pid:[4026531836]".
	PIDNS string
	PID   int
	// Start is when the process started, in clock ticks after boot
	// (field 22 of /proc/PID/stat): with Boot and PID, it tells the
	// process apart from a later one given the same pid.
	Start uint64
	// Group, if not 0, is a process group that the process's work runs
	// in: it has ended only once no process is left in it.
	Group int
}

// Known reports whether id identifies a process.
func (id ID) Known() bool { return id.Boot != "" && id.PIDNS != "" && id.PID > 0 && id.Start > 0 }

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
// id is known, recorded on this machine since its last boot and in the
// pid namespace of this process, and no process with its pid and start
// time runs (none has its pid, or one that started at another time, or
// one that has exited and not yet been reaped), nor any process in its
// Group (kill(-Group, 0) answers ESRCH). Whenever it cannot be
// sure (another machine, boot or namespace, a /proc that hides other
// users' processes), it returns false.
func Ended(id ID) bool {
	me := Self()
	if !id.Known() || !me.Known() || id.Boot != me.Boot || id.PIDNS != me.PIDNS {
		return false
	}
	switch {
	case id.PID == me.PID && id.Start == me.Start:
		return false // this process
	case id.PID != me.PID && !ended(id):
		return false
	}
	return id.Group <= 0 || groupEnded(id.Group)
}
