//go:build linux

package main

import (
	"bytes"
	"errors"
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

// TestHolderKilled kills objsync lock with SIGKILL: its guardian kills
// the command's whole process group, a grandchild that ignores SIGTERM
// included, and objsync lock --try on this machine then takes the lock at
// once, not after its ttl of a minute.
func TestHolderKilled(t *testing.T) {
	dir := t.TempDir()
	h := startCLI(t, dir, "lock", "--ttl", "1m", "lock", "--", "sh", "-c",
		`sh -c 'trap "" TERM; echo $$ > grandchild; exec sleep 300' & echo $$ > pid; touch ready; wait`)
	waitFile(t, filepath.Join(dir, "ready"))
	waitFile(t, filepath.Join(dir, "grandchild"))
	pgid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	grandchild, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "grandchild"))))
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	if syscall.Kill(grandchild, 0) != nil {
		t.Fatal("the grandchild is not running")
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.wait(t)
	start := time.Now()
	for {
		r := runCLI(t, dir, "lock", "--try", "lock", "--", "sh", "-c", "echo $OBJSYNC_FENCE > fence")
		if r.code == 0 {
			break
		}
		if r.code != exitNotAcquired || time.Since(start) > 10*time.Second {
			t.Fatalf("lock --try after the holder was killed: exit %d, stderr %q", r.code, r.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the lock was taken while the killed holder's command group still had processes (kill: %v)", err)
	}
	if got := readFile(t, filepath.Join(dir, "fence")); got != "2\n" {
		t.Errorf("the next holder ran with fence %q, want 2", got)
	}
}
