package objsync_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/procid"
)

// startHolder runs the test binary as a holder (holdUntilKilled) of the
// file lock at lock, under the command prefix if any, and returns it once
// it holds, with its fence.
func startHolder(t *testing.T, role, lock string, prefix ...string) (*exec.Cmd, int64) {
	t.Helper()
	args := append(prefix, os.Args[0], "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "OBJSYNC_TEST_LOCK="+lock, "OBJSYNC_TEST_JOURNAL="+os.DevNull)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if group, ok := strings.CutPrefix(line, "group "); ok {
		pgid, _ := strconv.Atoi(strings.TrimSpace(group))
		t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
		line, err = r.ReadString('\n')
	}
	var fence int64
	if _, serr := fmt.Sscanf(line, "held %d", &fence); err != nil || serr != nil {
		t.Fatalf("holder said %q (%v)", line, err)
	}
	return cmd, fence
}

// holdsOn checks that the file lock at lock is held, by a holder not
// judged gone: Inspect says so, TryLock fails, and (for a plain lock)
// Leader names a leader. It returns the Mutex it opened with opts.
func holdsOn(t *testing.T, lock string, opts ...objsync.Option) *objsync.Mutex {
	t.Helper()
	m, err := objsync.Open("file", lock, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if st, err := m.Inspect(context.Background()); err != nil || !st.Held || st.HolderGone {
		t.Errorf("Inspect: %+v, %v; want held, not gone", st, err)
	}
	if len(opts) == 0 {
		if _, err := objsync.NewElection(m).Leader(context.Background()); err != nil {
			t.Errorf("Leader: %v; want the holder", err)
		}
	}
	if ok, _, err := m.TryLock(context.Background(), time.Minute); ok || err != nil {
		t.Errorf("TryLock = %v, %v; want false", ok, err)
	}
	return m
}

// TestHolderEnded: a holder killed with SIGKILL on this machine, in this
// pid namespace, leaves a lock that a TryLock in a fresh process takes over
// at once, with the next fence; Inspect says the holder is gone, and
// Leader that there is no leader. Not so for a holder that recorded no
// process (WithoutProcessCheck).
func TestHolderEnded(t *testing.T) {
	for _, tc := range []struct {
		role     string
		opts     []objsync.Option
		takeover bool
	}{
		{"hold", nil, true},
		{"hold-queue", []objsync.Option{objsync.WithQueue()}, true},
		{"hold-unchecked", nil, false},
	} {
		t.Run(tc.role, func(t *testing.T) {
			lock := t.TempDir() + "/lock"
			holder, fence := startHolder(t, tc.role, lock)
			m, err := objsync.Open("file", lock, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			// Known to run only if it recorded its process.
			if st, err := m.Inspect(context.Background()); err != nil || !st.Held || st.HolderGone || st.HolderRunning != tc.takeover {
				t.Fatalf("Inspect of a live holder's lock: %+v, %v; want HolderRunning %v", st, err, tc.takeover)
			}
			holder.Process.Kill()
			holder.Wait()
			st, err := m.Inspect(context.Background())
			if err != nil || !st.Held || st.HolderGone != tc.takeover || st.HolderRunning {
				t.Fatalf("Inspect after the holder was killed: %+v, %v; want HolderGone %v", st, err, tc.takeover)
			}
			if tc.role != "hold-queue" {
				_, err := objsync.NewElection(m).Leader(context.Background())
				if gone := errors.Is(err, objsync.ErrNoLeader); gone != tc.takeover {
					t.Fatalf("Leader after the holder was killed: %v; want no leader: %v", err, tc.takeover)
				}
			}
			ok, got, err := m.TryLock(context.Background(), time.Minute)
			if err != nil || ok != tc.takeover {
				t.Fatalf("TryLock after the holder was killed = %v, %v; want %v", ok, err, tc.takeover)
			}
			if ok && got != fence+1 {
				t.Fatalf("fence %d after the holder's %d", got, fence)
			}
		})
	}
}

// TestHolderEndedElsewhere: a holder in another pid namespace (as in
// another container of this machine, whose pids mean other processes) is
// never judged gone, even once it has ended.
func TestHolderEndedElsewhere(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, for unshare --pid (CI runs as root)")
	}
	lock := t.TempDir() + "/lock"
	holder, _ := startHolder(t, "hold", lock, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
	// The holder runs as unshare's child: its pid here.
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", holder.Process.Pid, holder.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	inner, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("unshare's children: %q", data)
	}
	holder.Process.Kill() // and unshare kills its child
	holder.Wait()
	for deadline := time.Now().Add(5 * time.Second); !errors.Is(syscall.Kill(inner, 0), syscall.ESRCH); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the holder in the other namespace still runs after 5s")
		}
	}
	holdsOn(t, lock)
}

// TestHolderEndedGroup: a holder whose work runs in a process group
// (WithProcessGroup) counts as ended only once the group is empty too.
func TestHolderEndedGroup(t *testing.T) {
	lock := t.TempDir() + "/lock"
	holder, fence := startHolder(t, "hold-group", lock)
	holder.Process.Kill()
	holder.Wait()
	m := holdsOn(t, lock) // the group runs on
	d, _ := driver.Lookup("file")
	store, key, err := d.Open(lock)
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := store.Read(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct{ Process struct{ Pgid int } }
	if err := json.Unmarshal(data, &obj); err != nil || obj.Process.Pgid <= 0 {
		t.Fatalf("the lock object names no process group (%v): %s", err, data)
	}
	syscall.Kill(-obj.Process.Pgid, syscall.SIGKILL)
	takesOver(t, m, fence, "the holder's group was killed")
}

// takesOver checks that TryLocks of m take the lock over, with the fence
// after the holder's, within 5s of what happened.
func takesOver(t *testing.T, m *objsync.Mutex, fence int64, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if ok, got, err := m.TryLock(context.Background(), time.Minute); ok && err == nil {
			if got != fence+1 {
				t.Fatalf("fence %d after the holder's %d", got, fence)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("TryLock still fails 5s after %s", what)
		}
	}
}

// The role "leader-exits" holds the lock at OBJSYNC_TEST_LOCK with a 3s
// lease, prints "held FENCE", and then ends its main thread (the thread
// group's leader) with exit(2), not exit_group(2): the rest of the
// process, and its renewals, run on. It runs in init, on the main thread.
func init() {
	if os.Getenv(roleEnv) != "leader-exits" {
		return
	}
	runtime.LockOSThread() // init runs on the main thread: stay there
	m, err := objsync.Open("file", os.Getenv("OBJSYNC_TEST_LOCK"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fence, err := m.Lock(context.Background(), 3*time.Second)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Printf("held %d\n", fence)
	syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0)
}

// TestHolderLeaderThreadExited (found by review): a holder whose first
// thread has exited shows as a zombie in /proc/PID/stat while its other
// threads run and renew: it was judged ended and its lock taken.
func TestHolderLeaderThreadExited(t *testing.T) {
	lock := t.TempDir() + "/lock"
	cmd, _ := startHolder(t, "leader-exits", lock)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder's first thread has not exited after 5s: %s", stat)
		}
	}
	holdsOn(t, lock)
}

// TestHolderOtherTimeNamespace (found by review): /proc shows start times
// shifted by the reader's boot-time offset, so a live holder in another
// time namespace (same pid namespace) was judged ended.
func TestHolderOtherTimeNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, for unshare --time (CI runs as root)")
	}
	for _, tc := range []struct {
		role string
		opts []objsync.Option
	}{{"hold", nil}, {"hold-queue", []objsync.Option{objsync.WithQueue()}}} {
		t.Run(tc.role, func(t *testing.T) {
			lock := t.TempDir() + "/lock"
			holder, _ := startHolder(t, tc.role, lock, "unshare", "--time", "--boottime", "1000", "--fork", "--kill-child")
			holdsOn(t, lock, tc.opts...)
			if holder.ProcessState != nil {
				t.Error("the holder is not running")
			}
		})
	}
}

// TestHolderProcessUnknownField: a holder whose process record holds a
// field this version does not know (a later version's condition on the
// holder's end) is never judged gone, and the field survives the writes of
// others (a waiter joining and leaving the queue). Objects of objsync
// before the record was nested are never judged either.
func TestHolderProcessUnknownField(t *testing.T) {
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
	record := fmt.Sprintf(`"boot_id":%q,"pid_ns":%q,"time_ns":%q,"start_ticks":%d`, id.Boot, id.PIDNS, id.TimeNS, id.Start)
	for _, tc := range []struct {
		name, process string
		gone          bool
	}{
		{"known", `"process":{` + record + `}`, true},
		{"unknown field", `"process":{` + record + `,"future_condition":"x"}`, false},
		{"not nested", record, false},               // dropped by the next write: only less is known then
		{"not an object", `"process":[1,2]`, false}, // found by review: the lock was stuck
	} {
		t.Run(tc.name, func(t *testing.T) {
			lock := t.TempDir() + "/lock"
			d, _ := driver.Lookup("file")
			store, key, err := d.Open(lock)
			if err != nil {
				t.Fatal(err)
			}
			obj := fmt.Sprintf(`{"objsync_lock":1,"state":"held","holder":"dead","fence":7,"seq":1,"ttl_ms":60000,"host":%q,"pid":%d,%s,"acquired_at":"2026-12-03T00:00:00Z","written_at":"2026-12-03T00:00:00Z"}`,
				id.Host, id.PID, tc.process)
			if _, err := store.Write(context.Background(), key, []byte(obj), ""); err != nil {
				t.Fatal(err)
			}
			m, err := objsync.Open("file", lock)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if st, err := m.Inspect(context.Background()); err != nil || !st.Held || st.HolderGone != tc.gone {
				t.Fatalf("Inspect: %+v, %v; want HolderGone %v", st, err, tc.gone)
			}
			if tc.gone || !strings.HasPrefix(tc.process, `"process"`) {
				return
			}
			// A Lock that waits joins the queue, and leaves it when it
			// gives up: two writes of the holder's state by another.
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond) // joins only with a second to spare
			defer cancel()
			if _, err := m.Lock(ctx, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Lock = %v, want the deadline", err)
			}
			data, _, err := store.Read(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			var written struct {
				QueueSeq int64 `json:"queue_seq"`
			}
			json.Unmarshal(data, &written)
			if written.QueueSeq == 0 || !bytes.Contains(data, []byte(tc.process)) {
				t.Fatalf("after a waiter joined and left (queue_seq %d), the holder's process record is not as written: %s", written.QueueSeq, data)
			}
		})
	}
}
