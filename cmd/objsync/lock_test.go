//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLockTakesTurns has three objsync lock processes contend for one lock:
// their commands must run one after the other, each with a fence one above
// the last.
func TestLockTakesTurns(t *testing.T) {
	dir := t.TempDir()
	const processes = 3
	var procs []*proc
	for range processes {
		procs = append(procs, startCLI(t, dir, append([]string{"lock", "--quiet", "lock"},
			shell(`echo "enter $OBJSYNC_FENCE $OBJSYNC_LOCK" >> journal; sleep 0.2; echo "leave $OBJSYNC_FENCE" >> journal`)...)...))
	}
	for _, p := range procs {
		if r := p.wait(t); r.code != 0 || r.stderr != "" {
			t.Fatalf("objsync lock: exit %d, stderr %q", r.code, r.stderr)
		}
	}
	var want strings.Builder
	for fence := 1; fence <= processes; fence++ {
		fmt.Fprintf(&want, "enter %d file://%s/lock\nleave %d\n", fence, dir, fence)
	}
	if got := readFile(t, filepath.Join(dir, "journal")); got != want.String() {
		t.Fatalf("journal:\n%s\nwant:\n%s", got, want.String())
	}
}

// holder starts objsync lock running a shell script that creates the file
// "ready", waits for SIGINT or SIGTERM and writes its name to "signal", and
// waits until it is ready. (The shell's own "Terminated" when the sleep it
// waits for dies goes to /dev/null.)
func holder(t *testing.T, dir string, flags ...string) *proc {
	t.Helper()
	return holderVia(t, dir, nil, flags...)
}

// holderVia is holder, with objsync run through via (see startCLIVia).
func holderVia(t *testing.T, dir string, via []string, flags ...string) *proc {
	t.Helper()
	return holding(t, dir, via, "lock", flags...)
}

// holding is holderVia for objsync lock or elect (command): its command
// appends the name of each signal it gets to the file "signal", and exits
// with a code of its own for each that ends it.
func holding(t *testing.T, dir string, via []string, command string, flags ...string) *proc {
	t.Helper()
	args := append(append([]string{command}, flags...), "lock")
	p := startCLIVia(t, dir, via, append(args, shell(`trap "echo INT >> signal; exit 7" INT; trap "echo TERM >> signal; exit 8" TERM
		trap "echo HUP >> signal; exit 9" HUP; trap "echo QUIT >> signal; exit 10" QUIT
		trap "echo USR1 >> signal; exit 11" USR1; trap "echo USR2 >> signal; exit 12" USR2; trap "echo WINCH >> signal" WINCH
		trap "echo ABRT >> signal; exit 13" ABRT; trap "echo ALRM >> signal; exit 14" ALRM; trap "echo SEGV >> signal; exit 15" SEGV
		echo $$ > pid; touch ready; { for i in $(seq 300); do sleep 0.1; done; } 2>/dev/null`)...)...)
	waitFile(t, filepath.Join(dir, "ready"))
	// The test ends the command's process group too, in case objsync did not.
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	return p
}

// TestTryWhileHeld: lock --try on a held lock says who holds it, and, as
// its holder records no process (--no-cgroup), how to get it if that
// holder died. (TestTryHolderRunsHere has a holder that records one.)
func TestTryWhileHeld(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir, "--value", "holder A", "--no-cgroup")
	r := runCLI(t, dir, "lock", "--try", "lock", "--", "touch", "ran")
	if r.code != exitNotAcquired {
		t.Errorf("exit code %d, want %d", r.code, exitNotAcquired)
	}
	line := oneLine(t, "stderr", r.stderr)
	want := fmt.Sprintf(`objsync: file://%s/lock is held by "holder A" on host `, dir)
	if !strings.HasPrefix(line, want) || !strings.Contains(line, fmt.Sprintf("pid %d, fence 1, since ", h.cmd.Process.Pid)) || !strings.HasSuffix(line, "(holder's clock); not waiting (--try); a holder that died frees it once unchanged for its ttl of 30s: wait for it with --timeout 31s, or break it with 'objsync unlock --force'") {
		t.Errorf("stderr = %q; want it to say who holds the lock", line)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("the command ran although the lock was held")
	}
}

func TestTimeout(t *testing.T) {
	dir := t.TempDir()
	holder(t, dir, "--no-cgroup")
	r := runCLI(t, dir, "lock", "--timeout", "300ms", "lock", "--", "touch", "ran")
	if r.code != exitNotAcquired {
		t.Errorf("exit code %d, want %d", r.code, exitNotAcquired)
	}
	// The waiting line, then why it gave up.
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if line := lines[len(lines)-1]; !strings.Contains(line, "; gave up after 300ms (--timeout); a holder that died frees it once unchanged for its ttl of 30s: wait for it with --timeout 31s") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// TestWaitingLine checks what a waiting objsync says when stderr is not a
// terminal: who holds the lock, once (the next line would come ten seconds
// later), and then that it has the lock.
func TestWaitingLine(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir, "--value", "holder A")
	waiter := startCLI(t, dir, "lock", "lock", "--", "true")
	waitFile(t, waiter.stderr)
	for deadline := 0; readFile(t, waiter.stderr) == "" && deadline < 2000; deadline++ {
		syscall.Nanosleep(&syscall.Timespec{Nsec: 1e7}, nil)
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	if r := h.wait(t); r.code != 8 {
		t.Fatalf("holder exit code %d, want 8 (its command's)", r.code)
	}
	r := waiter.wait(t)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != 0 || len(lines) != 2 {
		t.Fatalf("waiter: exit %d, stderr %q; want 0 and two lines", r.code, r.stderr)
	}
	wantWait := fmt.Sprintf(`objsync: waiting for file://%s/lock: held by "holder A" on host `, dir)
	if !strings.HasPrefix(lines[0], wantWait) || !strings.Contains(lines[0], fmt.Sprintf("pid %d, fence 1,", h.cmd.Process.Pid)) || !strings.Contains(lines[0], "(ttl 30s)") {
		t.Errorf("first line %q; want it to start %q", lines[0], wantWait)
	}
	if want := fmt.Sprintf("objsync: acquired file://%s/lock, fence 2, after waiting ", dir); !strings.HasPrefix(lines[1], want) {
		t.Errorf("second line %q; want it to start %q", lines[1], want)
	}
}

// TestLostLock breaks the lock of a running command from a third process:
// the command gets SIGTERM and objsync exits with its own code for that.
func TestLostLock(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir, "--ttl", "1s", "--value", "victim")
	r := runCLI(t, dir, "unlock", "--force", "lock")
	want := fmt.Sprintf(`broke file://%s/lock: it was held by "victim" on host `, dir)
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) || r.stderr != "" {
		t.Fatalf("unlock --force: exit %d, stdout %q, stderr %q; want 0 and %q...", r.code, r.stdout, r.stderr, want)
	}
	r = h.wait(t)
	if r.code != exitLost {
		t.Errorf("exit code %d, want %d", r.code, exitLost)
	}
	if got := readFile(t, filepath.Join(dir, "signal")); got != "TERM\n" {
		t.Errorf("the command got %q, want TERM", got)
	}
	line := oneLine(t, "stderr", r.stderr)
	if want := fmt.Sprintf("objsync: lock lost: file://%s/lock: freed by ", dir); !strings.HasPrefix(line, want) || !strings.HasSuffix(line, "; sending SIGTERM to the command, and SIGKILL after 500ms") { // half the ttl
		t.Errorf("stderr = %q", line)
	}
}

// TestLostLockKill: a command that ignores SIGTERM gets SIGKILL after
// --grace, and so does every process of its group.
func TestLostLockKill(t *testing.T) {
	dir := t.TempDir()
	h := startCLI(t, dir, append([]string{"lock", "--ttl", "1s", "--grace", "200ms", "lock"},
		shell(`trap "" TERM; (while :; do echo $i >> beats; i=$((i+1)); sleep 0.01; done) & touch ready; sleep 30`)...)...)
	waitFile(t, filepath.Join(dir, "ready"))
	if r := runCLI(t, dir, "unlock", "--force", "lock"); r.code != 0 {
		t.Fatalf("unlock --force: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.wait(t); r.code != exitLost {
		t.Errorf("exit code %d, want %d", r.code, exitLost)
	}
	// The background loop of the command beats every 10ms while it lives.
	before := readFile(t, filepath.Join(dir, "beats"))
	syscall.Nanosleep(&syscall.Timespec{Nsec: 3e8}, nil)
	if after := readFile(t, filepath.Join(dir, "beats")); after != before {
		t.Fatal("a process of the command's group survived SIGKILL")
	}
}

// TestLostLockKillsLeftovers (found by review): when the lock is lost and
// the command exits on SIGTERM, a process of its group that ignores
// SIGTERM still gets SIGKILL when --grace ends, before objsync exits; it
// ran on before.
func TestLostLockKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	h := startCLI(t, dir, append([]string{"lock", "--ttl", "1s", "--grace", "200ms", "lock"},
		shell(`(trap "" TERM; while :; do echo $i >> beats; i=$((i+1)); sleep 0.01; done) & touch ready; sleep 30`)...)...)
	waitFile(t, filepath.Join(dir, "ready"))
	if r := runCLI(t, dir, "unlock", "--force", "lock"); r.code != 0 {
		t.Fatalf("unlock --force: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.wait(t); r.code != exitLost {
		t.Errorf("exit code %d, want %d", r.code, exitLost)
	}
	before := readFile(t, filepath.Join(dir, "beats"))
	syscall.Nanosleep(&syscall.Timespec{Nsec: 3e8}, nil)
	if after := readFile(t, filepath.Join(dir, "beats")); after != before {
		t.Fatal("a process of the command's group that ignores SIGTERM ran on after objsync exited")
	}
}

// TestSignalsForwarded sends objsync lock and elect each signal a shell
// user might: the command gets it, and the lock is free once objsync has
// exited with the command's code. SIGWINCH, which ends nothing, is passed
// on too, and the command runs on.
func TestSignalsForwarded(t *testing.T) {
	for _, command := range [][]string{{"lock"}, {"elect", "--value", "v"}} {
		for _, tt := range []struct {
			sig  syscall.Signal
			name string
			code int
		}{{syscall.SIGINT, "INT", 7}, {syscall.SIGTERM, "TERM", 8}, {syscall.SIGHUP, "HUP", 9}, {syscall.SIGQUIT, "QUIT", 10},
			{syscall.SIGUSR1, "USR1", 11}, {syscall.SIGUSR2, "USR2", 12}, {syscall.SIGWINCH, "WINCH", 8},
			// SIGABRT (systemd's watchdog sends it too) and a SIGSEGV sent
			// by kill ended objsync with Go's stack dump; SIGALRM, which Go
			// ignores, never reached the command.
			{syscall.SIGABRT, "ABRT", 13}, {syscall.SIGALRM, "ALRM", 14}, {syscall.SIGSEGV, "SEGV", 15}} {
			t.Run(command[0]+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				h := holding(t, dir, nil, command[0], command[1:]...)
				h.cmd.Process.Signal(tt.sig)
				want := tt.name + "\n"
				if tt.sig == syscall.SIGWINCH {
					waitFile(t, filepath.Join(dir, "signal"))
					h.cmd.Process.Signal(syscall.SIGTERM)
					want += "TERM\n"
				}
				if r := h.wait(t); r.code != tt.code || r.stderr != "" {
					t.Errorf("exit %d, stderr %q; want %d (the command's) and nothing", r.code, r.stderr, tt.code)
				}
				if got := readFile(t, filepath.Join(dir, "signal")); got != want {
					t.Errorf("the command got %q, want %q", got, want)
				}
				if st := status(t, dir); !st.Exists || st.Held || st.Fence != 1 {
					t.Errorf("after exit the lock is %+v; want free, fence 1", st)
				}
			})
		}
	}
}

// TestSignalWhileWaiting: a signal that ends a process by default ends the
// wait for the lock with 128 plus its number, SIGQUIT, SIGABRT and a
// SIGSEGV sent by kill without Go's stack dump; SIGWINCH is ignored.
func TestSignalWhileWaiting(t *testing.T) {
	for _, command := range [][]string{{"lock"}, {"elect", "--value", "v"}} {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
			syscall.SIGABRT, syscall.SIGALRM, syscall.SIGSEGV} {
			t.Run(command[0]+"/"+sig.String(), func(t *testing.T) {
				dir := t.TempDir()
				holding(t, dir, nil, command[0], command[1:]...)
				waiter := startCLI(t, dir, append(command, "lock", "--", "touch", "ran")...)
				waitFile(t, waiter.stderr)
				for i := 0; readFile(t, waiter.stderr) == "" && i < 2000; i++ {
					syscall.Nanosleep(&syscall.Timespec{Nsec: 1e7}, nil)
				}
				if sig == syscall.SIGQUIT {
					// Ignored, it would let SIGQUIT through.
					waiter.cmd.Process.Signal(syscall.SIGWINCH)
					select {
					case <-waiter.done:
						t.Fatal("SIGWINCH ended the wait")
					case <-time.After(100 * time.Millisecond):
					}
				}
				waiter.cmd.Process.Signal(sig)
				r := waiter.wait(t)
				if r.code != exitSignal+int(sig) {
					t.Errorf("exit code %d, want %d", r.code, exitSignal+int(sig))
				}
				if strings.Contains(r.stderr, "goroutine") {
					t.Errorf("stderr has a stack dump:\n%s", r.stderr)
				}
				if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
					t.Error("the command ran")
				}
			})
		}
	}
}

func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "not-executable"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		command []string
		code    int
		stderr  string
	}{
		{[]string{"--", "true"}, 0, ""},
		{shell("exit 42"), 42, ""},
		{shell("kill -TERM $$"), 128 + 15, ""},
		{[]string{"--", "objsync-no-such-command"}, exitNotFound, `objsync: exec: "objsync-no-such-command": executable file not found in $PATH` + "\n"},
		{[]string{"--", "./not-executable"}, exitCannotRun, `objsync: exec: "./not-executable": permission denied` + "\n"},
	}
	for _, tt := range tests {
		r := runCLI(t, dir, append([]string{"lock", "lock"}, tt.command...)...)
		if r.code != tt.code || r.stderr != tt.stderr {
			t.Errorf("objsync lock lock %q: exit %d, stderr %q; want %d, %q", tt.command, r.code, r.stderr, tt.code, tt.stderr)
		}
	}
}

// status returns what objsync status --json says about the lock in dir,
// having checked that its exit code agrees: held, free or absent.
func status(t *testing.T, dir string) statusJSON {
	t.Helper()
	r := runCLI(t, dir, "status", "lock", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.stderr != "" {
		t.Fatalf("status --json: exit %d, stderr %q, %v", r.code, r.stderr, err)
	}
	want := exitStatusHeld
	switch {
	case !st.Exists:
		want = exitStatusAbsent
	case !st.Held:
		want = exitStatusFree
	}
	if r.code != want {
		t.Fatalf("status --json: exit %d for %+v; want %d", r.code, st, want)
	}
	return st
}

// TestUnreachableStore: a DSN whose endpoint answers nothing (a typo) makes
// objsync lock exit 125 with the cause within seconds, not wait for ever,
// nor report "not acquired" when --timeout runs out.
func TestUnreachableStore(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connections to it are now refused
	dsn := "minio://AK:SECRETKEY@" + addr + "/bucket/lock?secure=false&region=us-east-1"
	start := time.Now()
	r := runCLI(t, t.TempDir(), "lock", "--timeout", "60s", dsn, "--", "true")
	if r.code != exitFailed {
		t.Errorf("exit code %d, want %d", r.code, exitFailed)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v to report an unreachable store", took)
	}
	// After the line that says what it is waiting for, the cause.
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "connection refused; the store did not answer 9 reads") {
		t.Errorf("stderr = %q; want the cause last", r.stderr)
	}
}

// TestSecretsNeverShownCLI: with credentials in the environment and in a
// minio DSN, nothing that lock, status --json, unlock --force, check or
// leader print on a store that refuses connections contains them.
func TestSecretsNeverShownCLI(t *testing.T) {
	const envSecret, dsnSecret = "envSecretValue123", "dsnSecretValue456"
	t.Setenv("AWS_ACCESS_KEY_ID", "AKENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", envSecret)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("MINIO_ROOT_USER", "AKENV")
	t.Setenv("MINIO_ROOT_PASSWORD", envSecret)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	var said strings.Builder
	for _, dsn := range []string{
		"minio://AKDSN:" + dsnSecret + "@" + addr + "/bucket/lock?secure=false&region=us-east-1",
		"minio://" + addr + "/bucket/lock?secure=false&region=us-east-1",
		"s3://bucket/lock?endpoint=http://" + addr + "&region=us-east-1",
	} {
		for _, args := range [][]string{
			{"lock", "--timeout", "5s", dsn, "--", "true"},
			{"status", "--json", dsn},
			{"unlock", "--force", dsn},
			{"check", dsn},
			{"leader", "--json", dsn},
		} {
			r := runCLI(t, dir, args...)
			said.WriteString(r.stdout + r.stderr)
		}
	}
	if !strings.Contains(said.String(), "connection refused") {
		t.Fatalf("the runs did not fail as planned:\n%s", said.String())
	}
	for _, secret := range []string{envSecret, dsnSecret} {
		if strings.Contains(said.String(), secret) {
			t.Errorf("a secret was shown:\n%s", said.String())
		}
	}
}
