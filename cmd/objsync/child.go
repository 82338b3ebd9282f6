//go:build unix

package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/objsync/objsync"
)

// child is the command, run in a process group of its own so that the
// signals objsync sends reach whatever the command started too.
type child struct {
	pid      int         // also the process group's id
	cg       *workCgroup // the cgroup it runs in, or nil
	states   chan waited // its stops, then its exit
	tty      *os.File    // objsync's controlling terminal, or nil
	wantsTTY bool        // it tried to use the terminal
}

type waited struct {
	ws  syscall.WaitStatus
	err error
}

func startChild(path string, argv, env []string, cg *workCgroup) (*child, error) {
	attr := &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(attr)
	cg.setAttr(attr)
	// The death signal comes when the thread that started the command
	// ends, not the process: keep this goroutine, the main one, on its
	// thread for good.
	runtime.LockOSThread()
	p, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   attr,
	})
	if err != nil {
		return nil, err
	}
	c := &child{pid: p.Pid, cg: cg, states: make(chan waited)}
	p.Release() // wait4 below reaps it
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		c.tty = tty
		// Taking the terminal back from the command's group is done from
		// the background, which SIGTTOU would otherwise stop.
		signal.Ignore(syscall.SIGTTOU)
	}
	go c.wait()
	return c, nil
}

// wait reports the command's job-control stops and then its exit.
func (c *child) wait() {
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(c.pid, &ws, syscall.WUNTRACED, nil)
		if err == syscall.EINTR {
			continue
		}
		c.states <- waited{ws, err}
		if err != nil || !ws.Stopped() {
			return
		}
	}
}

// supervise waits for the command to exit, passing on the signals objsync
// gets and stopping the command if the lock is lost: SIGTERM to its group,
// and SIGKILL when grace ends, even if the command exited before. It
// returns the command's exit status, as a shell reports it, and whether
// the lock was lost.
func (c *child) supervise(m *objsync.Mutex, grace time.Duration, sigs <-chan os.Signal) (status int, lost bool) {
	done := m.Done()
	var kill <-chan time.Time
	for {
		select {
		case w := <-c.states:
			switch {
			case w.err != nil:
				out.errorf("waiting for the command: %v", w.err)
				return exitFailed, lost
			case w.ws.Stopped():
				c.stopped(w.ws.StopSignal())
				continue
			}
			c.reclaimTerminal()
			if kill != nil {
				// The lock was lost: what is left of the group gets
				// SIGKILL too, when --grace ends, before objsync exits.
				<-kill
				c.signal(syscall.SIGKILL)
			}
			if w.ws.Signaled() {
				return exitSignal + int(w.ws.Signal()), lost
			}
			return w.ws.ExitStatus(), lost
		case sig := <-sigs:
			c.forward(sig.(syscall.Signal))
		case <-done:
			done, lost = nil, true
			out.errorf("%v; sending SIGTERM to the command, and SIGKILL after %v", m.Err(), grace)
			c.forward(syscall.SIGTERM)
			kill = time.After(grace)
		case <-kill:
			kill = nil
			c.signal(syscall.SIGKILL)
		}
	}
}

// signal sends sig to the command's process group; SIGKILL goes to its
// cgroup too, which holds whatever left the group.
func (c *child) signal(sig syscall.Signal) {
	syscall.Kill(-c.pid, sig)
	if sig == syscall.SIGKILL {
		c.cg.kill()
	}
}

// forward passes a signal objsync got on to the command's process group.
func (c *child) forward(sig syscall.Signal) {
	if sig == syscall.SIGCONT && c.wantsTTY {
		c.giveTerminal() // objsync was continued (fg): so is the command
	}
	c.signal(sig)
	if slices.Contains(terminating, os.Signal(sig)) {
		c.signal(syscall.SIGCONT) // a stopped command must run to act on sig
	}
}

// stopped follows the command into a job-control stop, so that the shell
// and the terminal behave as if the command were not in a group of its
// own.
func (c *child) stopped(sig syscall.Signal) {
	switch sig {
	case syscall.SIGTTIN, syscall.SIGTTOU:
		// It tried to use the terminal, which objsync's group has.
		c.wantsTTY = true
		if c.giveTerminal() {
			c.signal(syscall.SIGCONT)
			return
		}
	case syscall.SIGTSTP:
		c.reclaimTerminal()
	default:
		return // SIGSTOP: stopped on purpose by someone who will continue it
	}
	if jobControl() {
		// Stop with it: the shell sees the job stopped, and the SIGCONT of
		// fg or bg is passed on. Meanwhile nothing renews the lease.
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	} else if sig == syscall.SIGTSTP {
		// Nobody would continue it; the kernel ignores SIGTSTP in such
		// process groups, and so does objsync.
		c.signal(syscall.SIGCONT)
	}
}

// jobControl reports whether a shell manages objsync's process group and so
// will continue it after a stop. It does not when the group is that of the
// session's leader (under script(1), cron, ssh without a terminal, a
// service manager): the kernel deems such a group orphaned.
func jobControl() bool {
	sid, err := unix.Getsid(0)
	return err == nil && sid != syscall.Getpgrp()
}

// giveTerminal makes the command's process group the terminal's foreground
// group, if objsync's group is, and reports whether the command has it.
func (c *child) giveTerminal() bool {
	if c.tty == nil {
		return false
	}
	fg, err := tcgetpgrp(c.tty)
	if err != nil || (fg != syscall.Getpgrp() && fg != c.pid) {
		return false
	}
	return unix.IoctlSetPointerInt(int(c.tty.Fd()), unix.TIOCSPGRP, c.pid) == nil
}

// reclaimTerminal takes the terminal back from the command's group, so that
// the shell finds it as it left it.
func (c *child) reclaimTerminal() {
	if c.tty == nil {
		return
	}
	if fg, err := tcgetpgrp(c.tty); err == nil && fg == c.pid {
		if err := unix.IoctlSetPointerInt(int(c.tty.Fd()), unix.TIOCSPGRP, syscall.Getpgrp()); err != nil {
			out.errorf("taking the terminal back: %v", err)
		}
	}
}

// tcgetpgrp returns the terminal's foreground process group. It reads a
// pid_t, which unix.IoctlGetInt would misread on big-endian machines.
func tcgetpgrp(tty *os.File) (int, error) {
	var pgrp int32
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, tty.Fd(), unix.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp))); errno != 0 {
		return 0, fmt.Errorf("TIOCGPGRP: %w", errno)
	}
	return int(pgrp), nil
}
