package objsync_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/file"
	"github.com/objsync/objsync/internal/locktest"
	"github.com/objsync/objsync/mem"
)

// freshMem returns an empty mem namespace for the test, also when tests
// run more than once (-count).
func freshMem(t *testing.T) (driver.Store, string) {
	s := mem.Namespace(t.Name())
	s.Reset()
	return s, "lock"
}

func TestMem(t *testing.T) { locktest.Run(t, freshMem) }

func TestFile(t *testing.T) {
	dir := t.TempDir()
	locktest.Run(t, func(t *testing.T) (driver.Store, string) {
		return file.NewStore(dir), strings.ReplaceAll(t.Name(), "/", "_")
	})
}

func TestQueueMem(t *testing.T) { locktest.RunQueue(t, freshMem) }

func TestQueueFile(t *testing.T) {
	dir := t.TempDir()
	locktest.RunQueue(t, func(t *testing.T) (driver.Store, string) {
		return file.NewStore(dir), strings.ReplaceAll(t.Name(), "/", "_")
	})
}

func TestElectionMem(t *testing.T) { locktest.RunElection(t, freshMem) }

func TestElectionFile(t *testing.T) {
	dir := t.TempDir()
	locktest.RunElection(t, func(t *testing.T) (driver.Store, string) {
		return file.NewStore(dir), strings.ReplaceAll(t.Name(), "/", "_")
	})
}

func TestOpenErrors(t *testing.T) {
	_, err := objsync.Open("nope", "nope://x")
	if err == nil || err.Error() != `objsync: unknown driver "nope" (forgotten import?)` {
		t.Fatalf("Open(nope) err = %v", err)
	}
	_, err = objsync.Open("mem", "mem://ns/k?bogus=1")
	if err == nil || !strings.Contains(err.Error(), `unknown DSN parameter "bogus"`) {
		t.Fatalf("Open with a bad DSN: err = %v", err)
	}
	names := objsync.Drivers()
	if !slices.Contains(names, "mem") || !slices.Contains(names, "file") {
		t.Fatalf("Drivers() = %v", names)
	}
}

func lockOrFatal(t *testing.T, m *objsync.Mutex) int64 {
	t.Helper()
	fence, err := m.Lock(context.Background(), time.Minute)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	return fence
}

// TestRateLimitedStore: a store that allows one write per key per interval
// (as GCS and R2 do) slows Lock and Unlock down but fails neither.
func TestRateLimitedStore(t *testing.T) {
	store, key := freshMem(t)
	s := store.(*mem.Store)
	s.SetWriteInterval(150 * time.Millisecond)
	m := objsync.NewMutex(s, key)
	defer m.Close()
	for want := int64(1); want <= 3; want++ {
		if fence := lockOrFatal(t, m); fence != want {
			t.Fatalf("fence = %d, want %d", fence, want)
		}
		if err := m.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFencesSurviveRestart: on the file driver, a new process (here: a new
// Mutex after every other one was closed) continues the fence sequence.
func TestFencesSurviveRestart(t *testing.T) {
	path := t.TempDir() + "/lock"
	for want := int64(1); want <= 3; want++ {
		m, err := objsync.Open("file", path)
		if err != nil {
			t.Fatal(err)
		}
		if fence := lockOrFatal(t, m); fence != want {
			t.Fatalf("fence = %d, want %d", fence, want)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// sameLocation is a store whose locations read like those of any other
// sameLocation: the Location of a store is a message, not an identity.
type sameLocation struct{ driver.Store }

func (sameLocation) Location(key string) string { return "mem://same/" + key }

// TestSharingByStoreNotLocation: Mutexes on two stores whose locations
// read alike are independent: neither waits for the other's local token,
// nor counts the other's versions as its own.
func TestSharingByStoreNotLocation(t *testing.T) {
	a := &sameLocation{mem.Namespace(t.Name() + "-a")}
	b := &sameLocation{mem.Namespace(t.Name() + "-b")}
	a.Store.(*mem.Store).Reset()
	b.Store.(*mem.Store).Reset()
	ma, mb := objsync.NewMutex(a, "lock"), objsync.NewMutex(b, "lock")
	defer ma.Close()
	defer mb.Close()
	lockOrFatal(t, ma)
	ok, fence, err := mb.TryLock(context.Background(), time.Minute)
	if !ok || err != nil || fence != 1 {
		t.Fatalf("TryLock on another store with the same location = %v, %d, %v", ok, fence, err)
	}
	// Two Opens of one DSN still share.
	m1, _ := objsync.Open("mem", "mem://"+t.Name()+"-a/shared")
	m2, _ := objsync.Open("mem", "mem://"+t.Name()+"-a/shared")
	defer m1.Close()
	defer m2.Close()
	lockOrFatal(t, m1)
	if ok, _, err := m2.TryLock(context.Background(), time.Minute); ok || err != nil {
		t.Fatalf("TryLock of a second Mutex on the same DSN while the first holds = %v, %v", ok, err)
	}
	if n := mem.Namespace(t.Name() + "-a").Requests().Total(); n != 4 {
		t.Fatalf("%d requests; a local TryLock must make none", n)
	}
}

// TestOptionErrors: options given values they cannot take are refused by
// Open, and by Lock for a Mutex made with NewMutex, never silently changed
// or left to panic.
func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opt  objsync.Option
		want string
	}{
		{objsync.WithBackoff(0, time.Second), "WithBackoff(0s, 1s)"},
		{objsync.WithBackoff(-time.Millisecond, time.Second), "WithBackoff(-1ms, 1s)"},
		{objsync.WithBackoff(time.Second, time.Millisecond), "WithBackoff(1s, 1ms)"},
		{objsync.WithLossNotice(-time.Second), "WithLossNotice(-1s)"},
	} {
		if _, err := objsync.Open("mem", "mem://"+t.Name()+"/lock", tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open with %s: %v", tc.want, err)
		}
		store, key := freshMem(t)
		m := objsync.NewMutex(store, key, tc.opt)
		if _, err := m.Lock(context.Background(), time.Minute); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Lock with %s: %v", tc.want, err)
		}
		m.Close()
	}
	store, key := freshMem(t)
	m := objsync.NewMutex(store, key, objsync.WithLossNotice(time.Second))
	defer m.Close()
	if _, err := m.Lock(context.Background(), time.Second); err == nil || !strings.Contains(err.Error(), "does not fit ttl 1s: at most 500ms") {
		t.Errorf("Lock with a notice longer than the ttl allows: %v", err)
	}
	if got := objsync.MaxLossNotice(time.Second); got != 500*time.Millisecond {
		t.Errorf("MaxLossNotice(1s) = %v", got)
	}
	if st, err := m.Inspect(context.Background()); err != nil || st.Exists {
		t.Errorf("a refused Lock wrote: %+v, %v", st, err)
	}
}

// TestFileLockOverEmptyFile: a lock path where touch or flock(1) left an
// empty file is a lock never taken, not "not an objsync lock"; through a
// symbolic link it is the same lock as its target.
func TestFileLockOverEmptyFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/lock", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir+"/lock", dir+"/link"); err != nil {
		t.Fatal(err)
	}
	m, err := objsync.Open("file", dir+"/lock")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if fence := lockOrFatal(t, m); fence != 1 {
		t.Fatalf("fence = %d, want 1", fence)
	}
	viaLink, err := objsync.Open("file", dir+"/link")
	if err != nil {
		t.Fatal(err)
	}
	defer viaLink.Close()
	if st, err := viaLink.Inspect(context.Background()); err != nil || !st.Held || st.Fence != 1 {
		t.Fatalf("Inspect through the link = %+v, %v", st, err)
	}
}

// TestRenewInterval: a hold writes once per RenewInterval, in virtual time
// so that the count is exact.
func TestRenewInterval(t *testing.T) {
	for _, ttl := range []time.Duration{objsync.MinTTL, 10 * time.Second, time.Hour} {
		synctest.Test(t, func(t *testing.T) {
			s := mem.Namespace(fmt.Sprintf("%s-%v", t.Name(), ttl))
			s.Reset()
			m := objsync.NewMutex(s, "lock")
			defer m.Close()
			ctx := context.Background()
			if _, err := m.Lock(ctx, ttl); err != nil {
				t.Fatal(err)
			}
			s.ResetRequests()
			const renewals = 7
			time.Sleep(renewals*objsync.RenewInterval(ttl) + objsync.RenewInterval(ttl)/2)
			synctest.Wait()
			if got := s.Requests(); got.Writes != renewals || got.Reads != 0 {
				t.Errorf("ttl %v: %+v in %d.5 renewal intervals of %v, want %d writes", ttl, got, renewals, objsync.RenewInterval(ttl), renewals)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLostNamesLocationOnce: a hold lost because its renewals failed says
// why with the store's error, which names the lock's location as the
// loss does already: once is enough.
func TestLostNamesLocationOnce(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	store := &failingWrites{Store: base, name: "holder"}
	loc := store.Location("lock")
	store.err = driver.Retryable(fmt.Errorf("%s: permission denied", loc))
	m := objsync.NewMutex(store, "lock")
	defer m.Close()
	if _, err := m.Lock(context.Background(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(-1)
	for deadline := time.Now().Add(10 * time.Second); m.Err() == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	err := m.Err()
	if !errors.Is(err, objsync.ErrLockLost) || !strings.Contains(err.Error(), "permission denied") || strings.Count(err.Error(), loc) != 1 {
		t.Errorf("Err() = %v; want ErrLockLost with the store's error, naming %s once", err, loc)
	}
}
