package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/internal/procid"
)

// workCgroup is the cgroup v2 that the command runs in, with its
// guardian: a process of its own session that creates the cgroup, kills
// every process left in it when objsync dies, however it dies, and removes
// it. The lock records the cgroup (objsync.WithCgroup), so that a
// contender on this machine takes the lock over as soon as objsync has
// ended and the cgroup is empty, and not before: nothing of the command
// runs then, grandchildren and processes that left the command's process
// group included.
type workCgroup struct {
	dir     string
	fd      int           // the cgroup's directory, for CLONE_INTO_CGROUP
	kills   *os.File      // its cgroup.kill, opened while objsync had descriptors to spare
	guard   *os.File      // the guardian's stdin: "r" then EOF for a release, EOF alone for a death
	guarded chan struct{} // closed when the guardian has exited
	started chan struct{} // closed when start has returned and done says whether it failed
	done    atomic.Bool   // released, or given up: the guardian's exit is expected
}

// newWorkCgroup starts the guardian, which creates the command's cgroup
// below objsync's own. It returns nil, and why, where that cannot be done:
// no cgroup v2, no right to create cgroups (not root, nothing delegated),
// clone3 refused, a guardian that does not answer.
func newWorkCgroup() (*workCgroup, error) {
	w := &workCgroup{fd: -1, started: make(chan struct{})}
	err := w.start()
	if err != nil {
		w.done.Store(true)
	}
	close(w.started)
	if err != nil {
		w.close() // the guardian, if any, removes the cgroup
		return nil, err
	}
	return w, nil
}

func (w *workCgroup) start() error {
	own, err := procid.OwnCgroup()
	if err != nil {
		return err
	}
	// The guardian starts in objsync's own cgroup, the way the command
	// will start in its own: should clone3 be refused (a seccomp filter),
	// it is refused here, before anything is locked.
	ownFD, err := syscall.Open(own, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(ownFD)
	stdin, guard, err := os.Pipe()
	if err != nil {
		return err
	}
	defer stdin.Close()
	w.guard = guard
	answers, stdout, err := os.Pipe()
	if err != nil {
		return err
	}
	defer answers.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		stdout.Close()
		return err
	}
	defer null.Close()
	// /proc/self/exe is this very binary, even if it was replaced or
	// removed since. A session of its own keeps the guardian out of the
	// reach of signals sent to objsync's process group or terminal.
	restore := hideInherited()
	p, err := os.StartProcess("/proc/self/exe", []string{guardianArg0}, &os.ProcAttr{
		Dir:   "/",
		Files: []*os.File{stdin, stdout, null},
		Sys:   &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: ownFD},
	})
	restore()
	stdout.Close()
	if err != nil {
		return fmt.Errorf("starting the guardian: %w", err)
	}
	w.guarded = make(chan struct{})
	go func() {
		state, err := p.Wait()
		// A guardian that could not make the cgroup exits before start
		// has returned its error: that exit is expected too.
		<-w.started
		if !w.done.Load() {
			out.errorf("the guardian of the command's cgroup exited (%v%v): should objsync die now, its lock is freed only by its ttl", state, err)
		}
		close(w.guarded)
	}()
	// It says "ready DIR" once it has made the cgroup. Whatever else ran
	// (a binary started through ld.so, whose /proc/self/exe is the
	// loader) does not.
	answers.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(answers).ReadString('\n')
	dir, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ready ")
	if !ok {
		// Not killed: should it be a guardian after all, slow to start,
		// the end of its stdin has it remove the cgroup it made.
		return fmt.Errorf("the guardian did not start: %q, %v", line, err)
	}
	w.dir = dir
	if w.fd, err = syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err != nil {
		return err
	}
	w.kills, err = os.OpenFile(filepath.Join(dir, "cgroup.kill"), os.O_WRONLY, 0)
	return err
}

// close lets the guardian go: what is left in the cgroup is killed unless
// release said "r" first.
func (w *workCgroup) close() {
	w.guard.Close()
	w.kills.Close()
	if w.fd >= 0 {
		syscall.Close(w.fd)
	}
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

// startError says why the command could not start when its cgroup is the
// cause (someone removed it): the error would otherwise name the command,
// as if it were missing.
func (w *workCgroup) startError(err error) error {
	if w == nil {
		return err
	}
	if _, serr := os.Stat(filepath.Join(w.dir, "cgroup.procs")); serr != nil {
		return fmt.Errorf("cannot start the command in its cgroup %s (%v): %v", w.dir, serr, err)
	}
	return err
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
// removes the cgroup once the processes left in it, if any, have ended by
// themselves. If none is left, the guardian exits at once, and objsync
// waits for that (a second at most) and reaps it: an init that reaps no
// orphans would keep it as a zombie.
func (w *workCgroup) release() {
	if w == nil {
		return
	}
	w.done.Store(true)
	w.guard.Write([]byte("r"))
	populated, err := procid.CgroupPopulated(w.dir)
	w.close()
	if err == nil && !populated {
		select {
		case <-w.guarded:
		case <-time.After(time.Second):
		}
	}
}

// runGuardian is the guardian (see workCgroup): it creates the cgroup and
// says "ready DIR" on stdout, reads its stdin until objsync closes it,
// kills every process in the cgroup unless objsync wrote "r" first, and
// removes the cgroup, and any made below it, once it is empty.
func runGuardian() int {
	// objsync may be gone before it reads the answer: that write must
	// fail, not kill the guardian before it has cleaned up.
	signal.Ignore(syscall.SIGPIPE)
	if name, err := unix.BytePtrFromString("objsync-guard"); err == nil {
		unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0) // ps shows it so, not "exe"
	}
	dir, err := procid.NewCgroup("objsync-")
	if err != nil {
		fmt.Printf("error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return exitFailed
	}
	fmt.Printf("ready %s\n", dir)
	os.Stdout.Close()
	var buf [1]byte
	if n, _ := os.Stdin.Read(buf[:]); n == 0 || buf[0] != 'r' {
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
			break
		}
		time.Sleep(wait)
	}
	if err := removeCgroups(dir); err != nil {
		return exitFailed
	}
	return 0
}

// hideInherited sets close-on-exec on the descriptors above stderr that
// objsync inherited without it (those it opens itself have it), and
// returns what clears it again: the guardian, started in between, must
// not hold a pipe or a flock(1) lock of whoever started objsync, while the
// command must get them all.
func hideInherited() (restore func()) {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return func() {}
	}
	var hidden []int
	for _, fd := range fds {
		n, err := strconv.Atoi(fd.Name())
		if err != nil || n <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			if _, err := unix.FcntlInt(uintptr(n), unix.F_SETFD, flags|unix.FD_CLOEXEC); err == nil {
				hidden = append(hidden, n)
			}
		}
	}
	return func() {
		for _, n := range hidden {
			if flags, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err == nil {
				unix.FcntlInt(uintptr(n), unix.F_SETFD, flags&^unix.FD_CLOEXEC)
			}
		}
	}
}

// removeCgroups removes the empty cgroup dir and those the command made
// below it, the deepest first.
func removeCgroups(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
