package procid

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var self = sync.OnceValue(func() ID {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ID{}
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ID{}
	}
	timeNS, _ := os.Readlink("/proc/self/ns/time") // none before Linux 5.6
	host, err := os.Hostname()
	if err != nil {
		return ID{}
	}
	// /proc/self is this process as the /proc mount's pid namespace
	// numbers it: if that is not its own (a /proc of another namespace),
	// the pids under /proc are not ours, and nothing is judged.
	pid := os.Getpid()
	st, err := readStat("self")
	if err != nil || st.pid != pid {
		return ID{}
	}
	return ID{Host: host, Boot: strings.TrimSpace(string(boot)), PIDNS: ns, TimeNS: timeNS, PID: pid, Start: st.start, CgroupNS: cgroupNS()}
})

func of(pid int) ID {
	id := Self()
	st, err := readStat(strconv.Itoa(pid))
	if !id.Known() || err != nil || st.pid != pid || exited(st.state) && allExited(pid) {
		return ID{}
	}
	id.PID, id.Start = pid, st.start
	return id
}

// ended is Ended for an id of this machine, boot and namespace, not this
// process.
func ended(id ID) bool {
	// kill(pid, 0) tells whether a process has the pid, even when /proc
	// hides it (hidepid): ESRCH only if none does.
	if err := syscall.Kill(id.PID, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	st, err := readStat(strconv.Itoa(id.PID))
	if err != nil || st.pid != id.PID {
		return false // hidden, or gone just now: not sure
	}
	return st.start != id.Start || exited(st.state) && allExited(id.PID)
}

// running is Running for an id of this machine, boot and namespace.
func running(id ID) bool {
	st, err := readStat(strconv.Itoa(id.PID))
	return err == nil && st.pid == id.PID && st.start == id.Start && !(exited(st.state) && allExited(id.PID))
}

func exited(state byte) bool { return state == 'Z' || state == 'X' }

// allExited reports whether every thread of process pid has exited: the
// state in /proc/PID/stat is its first thread's, which may exit alone.
func allExited(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		st, err := readStat(strconv.Itoa(pid) + "/task/" + task.Name())
		if err != nil || !exited(st.state) {
			return false
		}
	}
	return true
}

// groupEnded reports whether no process is left in process group g.
func groupEnded(g int) bool { return errors.Is(syscall.Kill(-g, 0), syscall.ESRCH) }

// stat is what Ended needs of /proc/PID/stat.
type stat struct {
	pid   int
	state byte
	start uint64
}

// readStat reads /proc/PROC/stat: "pid (comm) state ppid ... starttime
// ...", where comm may hold spaces and parentheses, so the fields after it
// are counted from the last ')'.
func readStat(proc string) (stat, error) {
	data, err := os.ReadFile("/proc/" + proc + "/stat")
	if err != nil {
		return stat{}, err
	}
	s := string(data)
	open, end := strings.IndexByte(s, ' '), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return stat{}, errors.New("procid: malformed stat")
	}
	id, err := strconv.Atoi(s[:open])
	if err != nil {
		return stat{}, err
	}
	fields := strings.Fields(s[end+1:]) // from field 3, the state
	const startField = 22 - 3
	if len(fields) <= startField || len(fields[0]) != 1 {
		return stat{}, errors.New("procid: malformed stat")
	}
	start, err := strconv.ParseUint(fields[startField], 10, 64)
	if err != nil {
		return stat{}, err
	}
	return stat{pid: id, state: fields[0][0], start: start}, nil
}
