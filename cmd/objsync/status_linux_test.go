package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync/internal/procid"
)

// TestStatusHolderGone: status says when a lock's holder ran on this
// machine and its process is gone, and objsync lock takes such a lock at
// once with --try. (TestHolderKilled kills objsync lock itself.)
func TestStatusHolderGone(t *testing.T) {
	dir := t.TempDir()
	// A holder that records its process: a sleep(1), as if it had held
	// the lock through the library, then killed.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	id := procid.Of(sleeper.Process.Pid)
	sleeper.Process.Kill()
	sleeper.Wait()
	if !id.Known() {
		t.Fatal("no process identity on this system")
	}
	store, key, err := openStore(filepath.Join(dir, "lock"), "")
	if err != nil {
		t.Fatal(err)
	}
	obj := fmt.Sprintf(`{"objsync_lock":1,"state":"held","holder":"dead","fence":7,"seq":1,"ttl_ms":60000,"host":%q,"pid":%d,"process":{"boot_id":%q,"pid_ns":%q,"time_ns":%q,"start_ticks":%d},"acquired_at":"2026-12-03T00:00:00Z","written_at":"2026-12-03T00:00:00Z"}`,
		id.Host, id.PID, id.Boot, id.PIDNS, id.TimeNS, id.Start)
	if _, err := store.Write(context.Background(), key, []byte(obj), ""); err != nil {
		t.Fatal(err)
	}
	if st := status(t, dir); !st.Held || !st.HolderGone {
		t.Fatalf("status of a lock whose holder's process is gone: %+v", st)
	}
	r := runCLI(t, dir, "status", "lock")
	if !strings.Contains(r.stdout, "the holder's process is gone") {
		t.Errorf("status: %q; want it to say the holder's process is gone", r.stdout)
	}
	if r := runCLI(t, dir, "lock", "--try", "lock", "--", "true"); r.code != 0 {
		t.Fatalf("lock --try over a holder whose process is gone: exit %d, stderr %q", r.code, r.stderr)
	}
	if st := status(t, dir); st.Held || st.Fence != 8 {
		t.Errorf("after lock --try: %+v; want free, fence 8", st)
	}
}

// TestStatusHolderRunning: status says when the holder's process runs on
// this machine, and when it is gone.
func TestStatusHolderRunning(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	h := holder(t, dir)
	if st := status(t, dir); !st.Held || !st.HolderRunning || st.HolderGone {
		t.Fatalf("status of a lock held by objsync lock on this machine: %+v", st)
	}
	if r := runCLI(t, dir, "status", "lock"); !strings.Contains(r.stdout, "held, by a process that runs on this machine") {
		t.Errorf("status: %q; want it to say the holder runs on this machine", r.stdout)
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.wait(t)
	for deadline := time.Now().Add(safety); ; time.Sleep(10 * time.Millisecond) {
		st := status(t, dir)
		if st.HolderRunning {
			t.Fatalf("status after objsync lock was killed: %+v", st)
		}
		if st.HolderGone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %v after objsync lock was killed: %+v", safety, st)
		}
	}
}
