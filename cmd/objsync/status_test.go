//go:build unix

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStatusJSON(t *testing.T) {
	dir := t.TempDir()
	if st := status(t, dir); st != (statusJSON{Lock: "file://" + dir + "/lock"}) {
		t.Errorf("a lock never acquired: %+v", st)
	}

	start := time.Now()
	h := holder(t, dir, "--value", "json holder", "--ttl", "5s")
	st := status(t, dir)
	host, _ := os.Hostname()
	want := statusJSON{
		Lock: "file://" + dir + "/lock", Exists: true, Held: true, Value: "json holder",
		Holder: st.Holder, Host: host, PID: h.cmd.Process.Pid, Fence: 1, TTLMillis: 5000,
		AcquiredAt: st.AcquiredAt, RenewedAt: st.RenewedAt,
		HolderRunning: st.HolderRunning, // see TestStatusHolderRunning
	}
	if st != want || len(st.Holder) != 32 {
		t.Errorf("a held lock: %+v, want %+v", st, want)
	}
	// Same clock here: the times can be checked, loosely.
	if st.AcquiredAt == nil || st.AcquiredAt.Before(start.Add(-time.Second)) || st.AcquiredAt.After(time.Now()) || st.RenewedAt.Before(*st.AcquiredAt) {
		t.Errorf("acquired_at %v, renewed_at %v: not during this test", st.AcquiredAt, st.RenewedAt)
	}

	// A waiting objsync lock joins the lock's queue; the release hands it
	// the lock.
	w := startCLI(t, dir, "lock", "--value", "waiter", "lock", "--", "true")
	for deadline := time.Now().Add(10 * time.Second); status(t, dir).Waiters != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no waiter in the queue after 10s: %+v", status(t, dir))
		}
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	h.wait(t)
	if r := w.wait(t); r.code != 0 {
		t.Fatalf("the waiter: exit %d, stderr %q", r.code, r.stderr)
	}
	if st := status(t, dir); !st.Exists || st.Held || st.Fence != 2 || st.Value != "waiter" || st.Waiters != 0 {
		t.Errorf("a lock handed on and released: %+v; want free, with the waiter's fence and value", st)
	}
}

func TestStatusWatches(t *testing.T) {
	dir := t.TempDir()
	runCLI(t, dir, "lock", "lock", "--", "true")
	r := runCLI(t, dir, "status", "--for", "300ms", "lock")
	if r.code != exitStatusFree || r.stderr != "" {
		t.Fatalf("status: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{
		fmt.Sprintf("lock       file://%s/lock\n", dir),
		"state      free (holder and renewed are of the write that freed it, the rest the last holder's)\n",
		"fence      1\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status output does not contain %q:\n%s", want, r.stdout)
		}
	}
	m := regexp.MustCompile(`\nunchanged  (\S+), watched for (\S+)\n`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no unchanged line in:\n%s", r.stdout)
	}
	for _, s := range m[1:] {
		if d, err := time.ParseDuration(s); err != nil || d < 300*time.Millisecond {
			t.Errorf("unchanged and watched for %s; want 300ms or more", s)
		}
	}
}

func TestUnlockFreeLock(t *testing.T) {
	dir := t.TempDir()
	for _, want := range []string{"free (never acquired)", "free (last fence 1)"} {
		r := runCLI(t, dir, "unlock", "--force", "lock")
		if wantOut := fmt.Sprintf("file://%s/lock is %s: nothing to break\n", dir, want); r.code != 0 || r.stdout != wantOut || r.stderr != "" {
			t.Errorf("unlock --force: exit %d, stdout %q, stderr %q; want 0, %q", r.code, r.stdout, r.stderr, wantOut)
		}
		runCLI(t, dir, "lock", "lock", "--", "true")
	}
}

func TestNotALock(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/lock", []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status", "lock"}, {"lock", "lock", "--", "true"}, {"unlock", "--force", "lock"}} {
		r := runCLI(t, dir, args...)
		line := oneLine(t, "stderr", r.stderr)
		if r.code != exitFailed || !strings.Contains(line, "object is not an objsync lock") || strings.Count(line, "objsync: ") != 1 {
			t.Errorf("objsync %s: exit %d, stderr %q; want %d and a clear message, prefixed once", strings.Join(args, " "), r.code, line, exitFailed)
		}
	}
}

// TestCheckSignal: a signal ends objsync check, waiting on a store that
// does not answer, with 128 plus its number and no stack dump (SIGQUIT
// dumped Go's stacks).
func TestCheckSignal(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGINT} {
		p := startCLI(t, dir, "check", "s3://bucket/lock?region=test&endpoint="+srv.URL)
		waitLines(t, p, 1) // "checking the store of ..."
		time.Sleep(100 * time.Millisecond)
		p.cmd.Process.Signal(sig)
		r := p.wait(t)
		if r.code != exitSignal+int(sig) || strings.Contains(r.stderr, "goroutine") {
			t.Errorf("check, then %v: exit %d, stderr %q; want %d, no stack dump", sig, r.code, r.stderr, exitSignal+int(sig))
		}
	}
}

// TestSignalsEndWaits: the signals that end lock's wait end the waits of
// status --for and leader --watch the same way: 128+N, without Go's stack
// dump for SIGQUIT and SIGABRT.
func TestSignalsEndWaits(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		sig  syscall.Signal
	}{
		{[]string{"status", "--for", "60s", "lock"}, syscall.SIGQUIT},
		{[]string{"status", "--for", "60s", "lock"}, syscall.SIGUSR1},
		{[]string{"leader", "--watch", "lock"}, syscall.SIGQUIT},
		{[]string{"leader", "--watch", "lock"}, syscall.SIGUSR2},
		{[]string{"status", "--for", "60s", "lock"}, syscall.SIGABRT},
		{[]string{"leader", "--watch", "lock"}, syscall.SIGALRM},
	} {
		p := startCLI(t, dir, tt.args...)
		if tt.args[1] == "--watch" {
			waitLines(t, p, 1) // "no leader": it watches
		} else {
			time.Sleep(time.Second) // nothing tells that it waits
		}
		p.cmd.Process.Signal(tt.sig)
		r := p.wait(t)
		if r.code != exitSignal+int(tt.sig) || strings.Contains(r.stderr, "goroutine") {
			t.Errorf("%s, then %v: exit %d, stderr %q; want %d, no stack dump", strings.Join(tt.args, " "), tt.sig, r.code, r.stderr, exitSignal+int(tt.sig))
		}
	}
}
