//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTerminal runs objsync on a terminal, made by script(1): the command,
// in its own process group, gets the terminal when it reads from it.
func TestTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to make a terminal")
	}
	dir := t.TempDir()
	cmd := exec.Command(script, "-qec", bin+` lock lock -- sh -c 'read x; echo "got $x"; exit 5'`, "/dev/null")
	cmd.Dir = dir
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	stdin.Write([]byte("hello\n")) // kept open: script ends the terminal at EOF
	timer := time.AfterFunc(safety, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer timer.Stop()
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 5 || !strings.Contains(stdout.String(), "got hello") {
		t.Fatalf("exit %d (%v), output %q; want 5 and the line read from the terminal", code, err, stdout.String())
	}
}

// TestStop sends objsync SIGTSTP, as a terminal's Ctrl-Z would: the command
// stops, then objsync does, so that a shell sees the job stopped; SIGCONT
// to objsync continues both.
func TestStop(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir)
	command, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	h.cmd.Process.Signal(syscall.SIGTSTP)
	waitState(t, h.cmd.Process.Pid, 'T')
	waitState(t, command, 'T')
	h.cmd.Process.Signal(syscall.SIGCONT)
	waitState(t, command, 'S')
	h.cmd.Process.Signal(syscall.SIGTERM)
	if r := h.wait(t); r.code != 8 {
		t.Errorf("exit %d, stderr %q; want 8, the command's", r.code, r.stderr)
	}
}

// waitState waits until process pid is in the state given (as in
// /proc/PID/stat: 'T' stopped, 'S' sleeping).
func waitState(t *testing.T, pid int, state byte) {
	t.Helper()
	var stat []byte
	for deadline := time.Now().Add(safety); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		stat, _ = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		// pid (comm) state ...; comm may hold spaces, not ')'.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == state {
			return
		}
	}
	t.Fatalf("process %d not in state %c: %s", pid, state, stat)
}

// TestHolderKilled kills objsync lock with SIGKILL where it cannot run its
// command in a cgroup: the command gets SIGTERM from the kernel, and a
// waiting objsync takes the lock over once it has seen it unchanged for
// its ttl. (TestHolderKilledAtOnce has the cgroup.)
func TestHolderKilled(t *testing.T) {
	dir := t.TempDir()
	h := holderVia(t, dir, withoutCgroups(t), "--ttl", "1s")
	waiter := startCLI(t, dir, "lock", "--quiet", "--timeout", "10s", "lock", "--", "sh", "-c", "echo $OBJSYNC_FENCE > fence")
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.wait(t)
	waitFile(t, filepath.Join(dir, "signal"))
	if got := readFile(t, filepath.Join(dir, "signal")); got != "TERM\n" {
		t.Errorf("the orphaned command got %q, want TERM", got)
	}
	if r := waiter.wait(t); r.code != 0 || r.stderr != "" {
		t.Fatalf("waiter: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := readFile(t, filepath.Join(dir, "fence")); got != "2\n" {
		t.Errorf("the waiter ran with fence %q, want 2", got)
	}
}
