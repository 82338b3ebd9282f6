package objsync_test

import (
	"context"
	"slices"
	"strings"
	"testing"
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
