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
	return startCLI(t, dir, append([]string{"elect", "--ttl", "2s", "--value", value, "lock"},
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
	if l := leaderJSONOf(t, r.stdout); r.code != 0 || l.Value != "a" || l.Fence != 1 || l.PID != a.cmd.Process.Pid {
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

func TestLeaderWatch(t *testing.T) {
	dir := t.TempDir()
	watcher := startCLI(t, dir, "leader", "--watch", "--json", "lock")
	for i, value := range []string{"a", "b"} {
		c := candidate(t, dir, value)
		waitFile(t, filepath.Join(dir, "ready-"+value))
		// The watcher polls about every second; wait until it printed
		// this term before ending it.
		for start := time.Now(); strings.Count(readFile(t, watcher.stdout), "\n") <= i; time.Sleep(20 * time.Millisecond) {
			if time.Since(start) > safety {
				t.Fatalf("the watcher did not print term %d: %q", i+1, readFile(t, watcher.stdout))
			}
		}
		touch(t, filepath.Join(dir, "stop-"+value))
		c.wait(t)
	}
	watcher.cmd.Process.Signal(syscall.SIGINT)
	r := watcher.wait(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 {
		t.Fatalf("leader --watch: %+v", r)
	}
	for i, want := range []string{"a", "b"} {
		if l := leaderJSONOf(t, lines[i]); l.Value != want || l.Fence != int64(i+1) {
			t.Fatalf("change %d = %+v, want %s with fence %d", i, l, want, i+1)
		}
	}
}
