//go:build unix

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The command that objsync lock and objsync elect run must not outlive
// objsync unsupervised: the lock records objsync's process and the
// command's process group (objsync.WithProcessGroup), and a contender on
// the same machine takes the lock over only when both are gone. So that
// the group exists before the lock is taken, the command's first process
// starts before Lock, as objsync itself in a waiting role (startAfterGo):
// it leads the group and waits for "go" on a pipe, with the fence, before
// it executes the command; if objsync dies first, the pipe closes and it
// exits without running anything. And so that nothing of the group runs
// on once objsync has died, a guardian (guardGroup), objsync again in a
// session of its own, waits on a pipe from objsync and kills the whole
// group with SIGKILL when the pipe closes without "done": when objsync
// died, whatever killed it.

// internalEnv selects one of these roles when objsync runs itself.
const internalEnv = "OBJSYNC_INTERNAL"

const (
	roleStart = "start-after-go"
	roleGuard = "guard"
)

// runInternal runs this process's internal role, if it has one, and
// returns its exit code.
func runInternal() (code int, ok bool) {
	role, ok := os.LookupEnv(internalEnv)
	if !ok {
		return 0, false
	}
	switch {
	case role == roleStart:
		return startAfterGo(os.Args[1], os.Args[2:]), true
	case strings.HasPrefix(role, roleGuard+":"):
		var pgid int
		if _, err := fmt.Sscanf(role, roleGuard+":%d", &pgid); err != nil || pgid <= 0 {
			fmt.Fprintf(os.Stderr, "objsync: %s=%q\n", internalEnv, role)
			return exitFailed, true
		}
		return guardGroup(pgid), true
	}
	fmt.Fprintf(os.Stderr, "objsync: %s=%q\n", internalEnv, role)
	return exitFailed, true
}

// goPipe is the file descriptor on which startAfterGo waits.
const goPipe = 3

// startAfterGo waits for objsync's "go FENCE LOCATION" on goPipe and then
// executes the command path with argv, with OBJSYNC_FENCE and OBJSYNC_LOCK
// in its environment. If the pipe closes first, it exits 0, running
// nothing: objsync did not get the lock, or died.
func startAfterGo(path string, argv []string) int {
	pipe := os.NewFile(goPipe, "go")
	line, err := bufio.NewReader(pipe).ReadString('\n')
	pipe.Close()
	var fence int64
	var quoted string
	if _, serr := fmt.Sscanf(line, "go %d %s\n", &fence, &quoted); err != nil || serr != nil {
		return 0
	}
	lock, err := strconv.Unquote(quoted)
	if err != nil {
		return 0
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name != internalEnv && name != "OBJSYNC_FENCE" && name != "OBJSYNC_LOCK" {
			env = append(env, kv)
		}
	}
	env = append(env, "OBJSYNC_FENCE="+strconv.FormatInt(fence, 10), "OBJSYNC_LOCK="+lock)
	err = syscall.Exec(path, argv, env)
	fmt.Fprintf(os.Stderr, "objsync: %s: %v\n", path, err)
	if errors.Is(err, syscall.ENOENT) {
		return exitNotFound
	}
	return exitCannotRun
}

// guardGroup says "ready" on standard output and reads standard input
// until it ends. Unless objsync said "done" last, it kills process group
// pgid with SIGKILL until no process is left in it (or 10s have passed:
// an exited process that nobody reaps stays in its group, and keeps the
// lock from being taken over before its TTL).
func guardGroup(pgid int) int {
	// Only SIGKILL ends a guardian early.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	os.Stdout.WriteString("ready\n")
	data, _ := io.ReadAll(os.Stdin)
	if string(data) == "done\n" {
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		syscall.Kill(-pgid, syscall.SIGKILL)
		if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) || time.Now().After(deadline) {
			return 0
		}
		time.Sleep(time.Millisecond)
	}
}

// guardian is objsync's end of a guardGroup process.
type guardian struct {
	in   *os.File      // closed without "done" kills the group
	gone chan struct{} // closed when the guardian has exited
	proc *os.Process
}

// startGuardian starts a guardian of process group pgid and returns once
// it is ready.
func startGuardian(pgid int) (*guardian, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("starting the guardian: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p, err := os.StartProcess(self, []string{"objsync-guard"}, &os.ProcAttr{
		Env:   append(os.Environ(), fmt.Sprintf("%s=%s:%d", internalEnv, roleGuard, pgid)),
		Files: []*os.File{inR, readyW, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	inR.Close()
	readyW.Close()
	if err != nil {
		inW.Close()
		readyR.Close()
		return nil, fmt.Errorf("starting the guardian: %w", err)
	}
	g := &guardian{in: inW, gone: make(chan struct{}), proc: p}
	ready := bufio.NewReader(readyR)
	if line, err := ready.ReadString('\n'); line != "ready\n" {
		inW.Close()
		readyR.Close()
		p.Wait()
		return nil, fmt.Errorf("starting the guardian: it said %q (%v)", line, err)
	}
	go func() {
		io.Copy(io.Discard, ready) // until it exits
		readyR.Close()
		p.Wait()
		close(g.gone)
	}()
	return g, nil
}

// done lets the guardian go without killing anything, and waits for it.
func (g *guardian) done() {
	g.in.WriteString("done\n")
	g.in.Close()
	<-g.gone
}
