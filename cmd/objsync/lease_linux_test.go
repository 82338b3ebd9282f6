package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCommandDeadBeforeTakeover: a holder that cannot renew kills its
// command before its lease ends. The command ignores SIGTERM, so only the
// SIGKILL that comes --grace after it ends it; on CLOCK_MONOTONIC it must
// be dead before the command of the next holder starts.
func TestCommandDeadBeforeTakeover(t *testing.T) {
	dir := t.TempDir()
	const ttl, grace = "2s", "600ms"
	h := startCLI(t, dir, append([]string{"lock", "--quiet", "--ttl", ttl, "--grace", grace, "lock"},
		shell(`trap "" TERM; echo $$ > pid.tmp; mv pid.tmp pid; exec sleep 60`)...)...)
	waitFile(t, filepath.Join(dir, "pid"))
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)

	// Right after a renewal, cut the holder off from the store: without a
	// file descriptor to spare, its every store call fails.
	lock := filepath.Join(dir, "lock")
	for last := readFile(t, lock); readFile(t, lock) == last; time.Sleep(time.Millisecond) {
	}
	// Not before the renewal's own fsyncs are done, or it fails after
	// landing and the holder counts its lease from the one before.
	time.Sleep(50 * time.Millisecond)
	if err := unix.Prlimit(h.cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 0, Max: 1024}, nil); err != nil {
		t.Fatal(err)
	}
	started := filepath.Join(dir, "started")
	next := startCLI(t, dir, "lock", "--quiet", "--ttl", ttl, "lock", "--", "env", monotimeEnv+"="+started, os.Args[0])

	// The pidfd becomes readable when the process has died.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for deadline := time.Now().Add(safety); ; {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if n == 1 {
			break
		}
		if err != syscall.EINTR || time.Now().After(deadline) {
			t.Fatalf("the first holder's command did not die (poll: %d, %v)", n, err)
		}
	}
	died := monotonicNow() // at or after its death
	if r := next.wait(t); r.code != 0 {
		t.Fatalf("second objsync lock: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.wait(t); r.code != exitLost {
		t.Errorf("first objsync lock: exit %d, want %d; stderr %q", r.code, exitLost, r.stderr)
	}
	start, err := strconv.ParseInt(strings.TrimSpace(readFile(t, started)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if died >= start {
		t.Fatalf("the first holder's command was still alive %v after the second holder's command started", time.Duration(died-start))
	}
	t.Logf("the first command died at least %v before the second started", time.Duration(start-died))
}
