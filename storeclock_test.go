package objsync_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/mem"
)

// process is a view of a store as another process has it: Mutexes on a
// different Store value share nothing of what they saw.
type process struct{ *mem.Store }

// deadHolder returns a mem store of the test's own whose "lock" a
// holder took with ttl and then stopped renewing: it died, for the others.
func deadHolder(t *testing.T, ttl time.Duration) *mem.Store {
	t.Helper()
	s := mem.Namespace(t.Name())
	s.Reset()
	dead := objsync.NewMutex(&process{s}, "lock", objsync.WithoutRenewal(), objsync.WithoutProcessCheck())
	if _, err := dead.Lock(context.Background(), ttl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	return s
}

// TestStoreClock: a fresh process WithStoreClock takes over a dead holder's
// lock in one read once the store's clock says it has been unchanged for
// the TTL and 1%, and not before; without it, a fresh process must watch
// the lock for that long itself.
func TestStoreClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Second
		s := deadHolder(t, ttl)
		ctx := context.Background()
		tryIn := func(opts ...objsync.Option) (bool, objsync.State) {
			t.Helper()
			m := objsync.NewMutex(&process{s}, "lock", opts...)
			defer m.Close()
			st, err := m.Inspect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ok, fence, err := m.TryLock(ctx, ttl)
			if err != nil || ok && fence != 2 {
				t.Fatalf("TryLock = %v, fence %d, %v", ok, fence, err)
			}
			if ok {
				m.Unlock(ctx)
			}
			return ok, st
		}
		time.Sleep(ttl)
		if ok, st := tryIn(objsync.WithStoreClock()); ok || st.StoreAge < ttl || st.StoreAge > ttl+time.Millisecond {
			t.Fatalf("at the TTL: took over %v; StoreAge %v", ok, st.StoreAge)
		}
		time.Sleep(ttl/100 + time.Millisecond)
		if ok, st := tryIn(); ok || st.StoreAge != 0 || st.Unchanged != 0 {
			t.Fatalf("without WithStoreClock: took over %v; %+v", ok, st)
		}
		if ok, st := tryIn(objsync.WithStoreClock()); !ok || st.StoreAge < ttl+ttl/100 || st.Unchanged != 0 {
			t.Fatalf("after the TTL and 1%%, WithStoreClock: took over %v; %+v", ok, st)
		}
	})
}

// TestStoreClockRefused: WithStoreClock needs a driver that tells ages,
// and a plain lock.
func TestStoreClockRefused(t *testing.T) {
	file, err := objsync.Open("file", t.TempDir()+"/lock", objsync.WithStoreClock())
	if err == nil {
		file.Close()
		t.Error("WithStoreClock on the file driver: no error")
	} else if !strings.Contains(err.Error(), "driver.AgeReader") {
		t.Errorf("WithStoreClock on the file driver: %v", err)
	}
	queue := objsync.NewMutex(mem.Namespace(t.Name()), "lock", objsync.WithStoreClock(), objsync.WithQueue())
	defer queue.Close()
	if _, err := queue.Lock(context.Background(), time.Minute); err == nil || !strings.Contains(err.Error(), "queue") {
		t.Errorf("WithStoreClock and WithQueue: Lock = %v", err)
	}
}

// TestStoreClockOptIn (found by review): a Mutex without WithStoreClock
// never counts the store's clock, even when another Mutex of the process,
// on the same store and lock, read the store's age.
func TestStoreClockOptIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Second
		s := deadHolder(t, ttl)
		ctx := context.Background()
		time.Sleep(ttl + ttl/100 + time.Millisecond)
		view := &process{s} // one process: its Mutexes share what they saw
		byStore := objsync.NewMutex(view, "lock", objsync.WithStoreClock())
		defer byStore.Close()
		if st, err := byStore.Inspect(ctx); err != nil || st.StoreAge < ttl {
			t.Fatalf("Inspect WithStoreClock: %+v, %v", st, err)
		}
		plain := objsync.NewMutex(view, "lock")
		defer plain.Close()
		if st, err := plain.Inspect(ctx); err != nil || st.StoreAge != 0 {
			t.Fatalf("Inspect without WithStoreClock: %+v, %v; want no StoreAge", st, err)
		}
		if ok, _, err := plain.TryLock(ctx, ttl); ok || err != nil {
			t.Fatalf("TryLock without WithStoreClock = %v, %v; want false: it has watched the lock for no time", ok, err)
		}
		if _, err := objsync.NewElection(plain).Leader(ctx); err != nil {
			t.Fatalf("Leader without WithStoreClock: %v; want the dead holder, not seen unchanged for its ttl", err)
		}
	})
}
