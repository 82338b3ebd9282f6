package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/internal/procid"
)

// guardianArg0 is the argv[0] that makes objsync a guardian (see
// runGuardian): not a name a user would give the binary.
const guardianArg0 = "objsync (guardian)"

// workCgroup is the cgroup v2 that the command runs in, with a guardian: a
// process of its own session that kills every process left in the cgroup
// when objsync dies, however it dies. The lock records the cgroup
// (objsync.WithCgroup), so that a contender on this machine takes the lock
// over as soon as objsync has ended and the cgroup is empty, and not
// before: nothing of the command runs then, grandchildren and processes
// that left the command's process group included.
type workCgroup struct {
	dir   string
	fd    int      // the cgroup's directory, for CLONE_INTO_CGROUP
	kills *os.File // its cgroup.kill, opened while objsync had descriptors to spare
	guard *os.File // the guardian's stdin: "r" then EOF for a release, EOF alone for a death
}

// newWorkCgroup creates the command's cgroup below objsync's own and starts
// its guardian. It returns nil, and why, where that cannot be done: no
// cgroup v2, no right to create cgroups (not root, nothing delegated),
// clone3 refused, a guardian that does not answer.
func newWorkCgroup() (*workCgroup, error) {
	dir, err := procid.NewCgroup("objsync-")
	if err != nil {
		return nil, err
	}
	w := &workCgroup{dir: dir, fd: -1}
	if err := w.start(); err != nil {
		w.close()
		os.Remove(dir)
		return nil, err
	}
	return w, nil
}

func (w *workCgroup) close() {
	w.guard.Close()
	w.kills.Close()
	syscall.Close(w.fd)
}

func (w *workCgroup) start() error {
	fd, err := syscall.Open(w.dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	w.fd = fd
	if w.kills, err = os.OpenFile(filepath.Join(w.dir, "cgroup.kill"), os.O_WRONLY, 0); err != nil {
		return err
	}
	// The guardian starts in objsync's own cgroup (the command's parent),
	// the way the command will start in its own: should clone3 be refused
	// (a seccomp filter), it is refused here, before anything is locked.
	own, err := syscall.Open(filepath.Dir(w.dir), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(own)
	stdin, guard, err := os.Pipe()
	if err != nil {
		return err
	}
	defer stdin.Close()
	w.guard = guard
	ready, stdout, err := os.Pipe()
	if err != nil {
		return err
	}
	defer ready.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		stdout.Close()
		return err
	}
	defer null.Close()
	// /proc/self/exe is this very binary, even if it was replaced or
	// removed since. A session of its own keeps the guardian out of the
	// reach of signals sent to objsync's process group or terminal.
	p, err := os.StartProcess("/proc/self/exe", []string{guardianArg0, w.dir}, &os.ProcAttr{
		Dir:   "/",
		Files: []*os.File{stdin, stdout, null},
		Sys:   &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: own},
	})
	stdout.Close()
	if err != nil {
		return fmt.Errorf("starting the guardian: %w", err)
	}
	go p.Wait() // reap it, should it end while objsync runs
	// It says "ready" once it runs as a guardian: whatever else ran (a
	// binary started through ld.so, whose /proc/self/exe is the loader)
	// does not.
	ready.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len("ready\n"))
	if n, err := ready.Read(buf); string(buf[:n]) != "ready\n" {
		p.Kill()
		return fmt.Errorf("the guardian did not start: %q, %v", buf[:n], err)
	}
	return nil
}

// options returns what the lock records of the command's processes: the
// cgroup, or, without one, nothing (the command may outlive a killed
// objsync, so only the TTL may free the lock).
func (w *workCgroup) options() []objsync.Option {
	if w == nil {
		return []objsync.Option{objsync.WithoutProcessCheck()}
	}
	return []objsync.Option{objsync.WithCgroup(w.dir)}
}

// setAttr has the command start in the cgroup.
func (w *workCgroup) setAttr(attr *syscall.SysProcAttr) {
	if w != nil {
		attr.UseCgroupFD, attr.CgroupFD = true, w.fd
	}
}

// kill sends SIGKILL to every process left in the cgroup.
func (w *workCgroup) kill() {
	if w != nil {
		if _, err := w.kills.WriteAt([]byte("1"), 0); err != nil {
			out.errorf("killing what is left of the command: %v", err)
		}
	}
}

// release tells the guardian that objsync ends as it should: the guardian
// removes the cgroup once the processes left in it, if any, have ended
// by themselves.
func (w *workCgroup) release() {
	if w != nil {
		w.guard.Write([]byte("r"))
		w.close()
	}
}

// runGuardian is the guardian of the cgroup dir (see workCgroup): it reads
// its stdin until objsync closes it, kills every process in the cgroup
// unless objsync wrote "r" first, and removes the cgroup once it is empty.
func runGuardian(dir string) int {
	if !strings.HasPrefix(filepath.Base(dir), "objsync-") {
		return exitUsage
	}
	os.Stdout.WriteString("ready\n")
	os.Stdout.Close()
	var buf [1]byte
	n, _ := os.Stdin.Read(buf[:])
	if n == 0 || buf[0] != 'r' {
		// objsync died: whatever it ran must end before anyone may take
		// its lock, and before the TTL for contenders elsewhere.
		procid.KillCgroup(dir)
	}
	for wait := time.Millisecond; ; wait = min(2*wait, time.Second) {
		populated, err := procid.CgroupPopulated(dir)
		if err != nil {
			return exitFailed
		}
		if !populated {
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				return exitFailed
			}
			return 0
		}
		time.Sleep(wait)
	}
}
