//go:build unix

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// candidate starts objsync elect with value, running a command that
// creates "ready-VALUE" and exits once "stop-VALUE" exists.
func candidate(t *testing.T, dir, value string) *proc {
	t.Helper()
	return candidateVia(t, dir, value, nil)
}

// candidateVia is candidate, with objsync run through via (see
// startCLIVia).
func candidateVia(t *testing.T, dir, value string, via []string) *proc {
	t.Helper()
	return startCLIVia(t, dir, via, append([]string{"elect", "--ttl", "2s", "--value", value, "lock"},
		shell(`touch ready-`+value+`; while [ ! -e stop-`+value+` ]; do sleep 0.05; done`)...)...)
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func leaderJSONOf(t *testing.T, text string) leaderJSON {
	t.Helper()
	var l leaderJSON
	if err := json.Unmarshal([]byte(text), &l); err != nil {
		t.Fatalf("leader --json printed %q: %v", text, err)
	}
	return l
}

func TestElectAndLeader(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, dir, "leader", "lock"); r.code != exitNotAcquired || oneLine(t, "stderr", r.stderr) != "objsync: file://"+dir+"/lock has no leader" {
		t.Fatalf("leader before any election: %+v", r)
	}
	a := candidate(t, dir, "a")
	waitFile(t, filepath.Join(dir, "ready-a"))
	b := candidate(t, dir, "b")
	r := runCLI(t, dir, "leader", "--json", "lock")
	if l := leaderJSONOf(t, r.stdout); r.code != 0 || !l.Leader || l.Value != "a" || l.Fence != 1 || l.PID != a.cmd.Process.Pid || l.TTLMillis != 2000 || l.Confirmed {
		t.Fatalf("leader while a leads: %+v", r)
	}
	touch(t, filepath.Join(dir, "stop-a"))
	if r := a.wait(t); r.code != 0 {
		t.Fatalf("elect a: %+v", r)
	}
	waitFile(t, filepath.Join(dir, "ready-b"))
	r = runCLI(t, dir, "leader", "--json", "lock")
	if l := leaderJSONOf(t, r.stdout); l.Value != "b" || l.Fence != 2 {
		t.Fatalf("leader after a resigned: %+v", r)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.wait(t)
	if r := runCLI(t, dir, "leader", "lock"); r.code != exitNotAcquired {
		t.Fatalf("leader after b resigned: %+v", r)
	}
}

// waitLines waits until p has printed at least n lines, and returns them.
func waitLines(t *testing.T, p *proc, n int) []string {
	t.Helper()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		text := readFile(t, p.stdout)
		if strings.Count(text, "\n") >= n {
			return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		}
		if time.Since(start) > safety {
			t.Fatalf("objsync %q printed %q, not %d lines, in %v", p.cmd.Args[1:], text, n, safety)
		}
	}
}

// kill ends the objsync elect of candidate value as a crash would: it
// never resigns. Its command, in a group of its own, is told to stop too.
func kill(t *testing.T, dir, value string, p *proc) {
	t.Helper()
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.wait(t)
	touch(t, filepath.Join(dir, "stop-"+value))
}

// TestLeaderDeadLeader: one read cannot tell a dead leader that ran
// without a cgroup (or on another machine) from a live one, and leader
// says so, with the ttl and how long it saw the lock unchanged; --confirm
// watches until it knows.
func TestLeaderDeadLeader(t *testing.T) {
	dir := t.TempDir()
	a := candidateVia(t, dir, "a", withoutCgroups(t))
	waitFile(t, filepath.Join(dir, "ready-a"))
	r := runCLI(t, dir, "leader", "--confirm", "--json", "lock")
	if l := leaderJSONOf(t, r.stdout); r.code != 0 || !l.Leader || l.Value != "a" || l.TTLMillis != 2000 || !l.Confirmed {
		t.Fatalf("leader --confirm while a leads: %+v", r)
	}
	kill(t, dir, "a", a)

	r = runCLI(t, dir, "leader", "--json", "lock")
	if l := leaderJSONOf(t, r.stdout); r.code != 0 || !l.Leader || l.Value != "a" || l.TTLMillis != 2000 || l.Confirmed || l.UnchangedMillis >= 2000 {
		t.Fatalf("leader --json, one read of the dead a: %+v", r)
	}
	r = runCLI(t, dir, "leader", "lock")
	if r.code != 0 || !strings.Contains(r.stdout, `leader "a", fence 1`) || !strings.Contains(r.stdout, "ttl 2s, unchanged ") ||
		!strings.HasSuffix(r.stdout, ": one read cannot tell whether it is alive\n") {
		t.Fatalf("leader, one read of the dead a: %+v", r)
	}

	start := time.Now()
	r = runCLI(t, dir, "leader", "--confirm", "lock")
	// It must itself have seen the lock unchanged for the ttl plus 1%.
	if took := time.Since(start); took < 2020*time.Millisecond {
		t.Fatalf("leader --confirm gave up on a after %v, before it could know", took)
	}
	if r.code != exitNotAcquired || r.stdout != "" || !strings.Contains(oneLine(t, "stderr", r.stderr), `has no leader: "a" (fence 1) resigned, or stopped renewing for its ttl of 2s`) {
		t.Fatalf("leader --confirm after a died: %+v", r)
	}
	if r := runCLI(t, dir, "leader", "--confirm", "--watch", "lock"); r.code != exitUsage {
		t.Fatalf("leader --confirm --watch: %+v", r)
	}
}

// TestLeaderWatch: --watch prints every change, "no leader" included, at
// start too, and exits 128+N on signal N.
func TestLeaderWatch(t *testing.T) {
	dir := t.TempDir()
	watcher := startCLI(t, dir, "leader", "--watch", "--json", "lock")
	waitLines(t, watcher, 1) // no leader yet
	a := candidate(t, dir, "a")
	waitLines(t, watcher, 2)
	touch(t, filepath.Join(dir, "stop-a")) // a resigns
	if r := a.wait(t); r.code != 0 {
		t.Fatalf("elect a: %+v", r)
	}
	waitLines(t, watcher, 3)
	b := candidate(t, dir, "b")
	waitLines(t, watcher, 4)
	kill(t, dir, "b", b) // b dies: no leader after its ttl
	waitLines(t, watcher, 5)
	watcher.cmd.Process.Signal(syscall.SIGTERM)
	r := watcher.wait(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitSignal+int(syscall.SIGTERM) || len(lines) != 5 {
		t.Fatalf("leader --watch: %+v", r)
	}
	for i, want := range []leaderJSON{{}, {Leader: true, Value: "a", Fence: 1}, {}, {Leader: true, Value: "b", Fence: 2}, {}} {
		l := leaderJSONOf(t, lines[i])
		if l.Leader != want.Leader || l.Value != want.Value || l.Fence != want.Fence || (l.Leader && (l.TTLMillis != 2000 || !l.Confirmed)) {
			t.Fatalf("change %d = %s, want %+v, confirmed", i, lines[i], want)
		}
	}

	// A leader already there is printed from one read, as unconfirmed.
	c := candidate(t, dir, "c")
	waitFile(t, filepath.Join(dir, "ready-c"))
	watcher = startCLI(t, dir, "leader", "--watch", "lock")
	line := waitLines(t, watcher, 1)[0]
	if !strings.Contains(line, `leader "c", fence 3`) || !strings.HasSuffix(line, ": one read cannot tell whether it is alive") {
		t.Fatalf("leader --watch, first line: %q", line)
	}
	touch(t, filepath.Join(dir, "stop-c"))
	c.wait(t)
	if line := waitLines(t, watcher, 2)[1]; line != "file://"+dir+"/lock: no leader" {
		t.Fatalf("leader --watch after c resigned: %q", line)
	}
	watcher.cmd.Process.Signal(syscall.SIGINT)
	if r := watcher.wait(t); r.code != exitSignal+int(syscall.SIGINT) || r.stderr != "" {
		t.Fatalf("leader --watch after SIGINT: %+v", r)
	}
}
