//go:build unix

package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/mem"
)

func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, dir, "check", "lock")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("check: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"round trips: read ", "removed the 2 scratch objects\n", "passed: the store keeps the conditions objsync relies on\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output does not contain %q:\n%s", want, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "\nok    "); n != 6 {
		t.Errorf("%d probes passed, want 6:\n%s", n, r.stdout)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != ".objsync-flock" { // the driver's own, left by design
			t.Errorf("check left %s behind", e.Name())
		}
	}
}

// recorder is a store that remembers the keys written.
type recorder struct {
	driver.Store
	mu   sync.Mutex
	keys map[string]bool
}

func (r *recorder) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	r.mu.Lock()
	if r.keys == nil {
		r.keys = map[string]bool{}
	}
	r.keys[key] = true
	r.mu.Unlock()
	return r.Store.Write(ctx, key, data, ifVersion)
}

// deletingRecorder is a recorder of a store that can delete.
type deletingRecorder struct{ *recorder }

func (d deletingRecorder) Delete(ctx context.Context, key string) error {
	return d.Store.(driver.Deleter).Delete(ctx, key)
}

// ignoresConditions is a store that accepts conditional writes and ignores
// the condition, like some S3 look-alikes.
type ignoresConditions struct{ *mem.Store }

func (s ignoresConditions) Write(ctx context.Context, key string, data []byte, _ driver.Version) (driver.Version, error) {
	_, current, err := s.Store.Read(ctx, key)
	if err != nil && !errors.Is(err, driver.ErrNotExist) {
		return "", err
	}
	return s.Store.Write(ctx, key, data, current)
}

// ignoresVersions honours create-only writes but writes over any version.
type ignoresVersions struct{ ignoresConditions }

func (s ignoresVersions) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if ifVersion == "" {
		return s.Store.Write(ctx, key, data, "")
	}
	return s.ignoresConditions.Write(ctx, key, data, ifVersion)
}

// staleReads answers reads with the first content written to a key, like a
// store whose reads lag behind its writes.
type staleReads struct {
	*mem.Store
	mu    sync.Mutex
	first map[string][]byte
}

func (s *staleReads) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	s.mu.Lock()
	if s.first == nil {
		s.first = map[string][]byte{}
	}
	if _, ok := s.first[key]; !ok {
		s.first[key] = data
	}
	s.mu.Unlock()
	return s.Store.Write(ctx, key, data, ifVersion)
}

func (s *staleReads) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	_, v, err := s.Store.Read(ctx, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first[key], v, err
}

// racyCreate checks that a key is absent and then writes it, leaving a
// window in which concurrent creates all succeed.
type racyCreate struct{ ignoresConditions }

func (s racyCreate) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if ifVersion != "" {
		return s.Store.Write(ctx, key, data, ifVersion)
	}
	if _, _, err := s.Store.Read(ctx, key); err == nil {
		return "", driver.ErrPrecondition
	}
	time.Sleep(5 * time.Millisecond)
	return s.ignoresConditions.Write(ctx, key, data, "")
}

func TestCheckStore(t *testing.T) {
	tests := []struct {
		name   string
		store  func(*mem.Store) driver.Store
		broken string // "" if the store must pass
	}{
		{"mem", func(s *mem.Store) driver.Store { return s }, ""},
		{"ignores conditions", func(s *mem.Store) driver.Store { return ignoresConditions{s} },
			"it accepted a create-only write on an existing key"},
		{"ignores versions", func(s *mem.Store) driver.Store { return ignoresVersions{ignoresConditions{s}} },
			"it accepted a write conditional on a stale version"},
		{"stale reads", func(s *mem.Store) driver.Store { return &staleReads{Store: s} },
			"a read returned other bytes or another version than the last write"},
		{"racy creates", func(s *mem.Store) driver.Store { return racyCreate{ignoresConditions{s}} },
			"of 8 concurrent create-only writes on one key succeeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := mem.Namespace(t.Name())
			rec := &recorder{Store: tt.store(ns)}
			var report strings.Builder
			err := checkStore(context.Background(), deletingRecorder{rec}, "locks/a", &report)
			switch {
			case tt.broken == "" && err != nil:
				t.Fatalf("checkStore: %v\n%s", err, report.String())
			case tt.broken != "" && (!errors.Is(err, errUnsafe) || !strings.Contains(err.Error(), tt.broken)):
				t.Fatalf("checkStore = %v; want errUnsafe saying %q\n%s", err, tt.broken, report.String())
			}
			if tt.broken != "" && !strings.Contains(report.String(), "\nFAIL  ") {
				t.Errorf("the report does not show the failure:\n%s", report.String())
			}
			if len(rec.keys) != 2 && tt.broken == "" {
				t.Errorf("wrote %d keys, want 2 scratch keys: %v", len(rec.keys), rec.keys)
			}
			for key := range rec.keys {
				if !strings.HasPrefix(key, "locks/a.objsync-check-") {
					t.Errorf("wrote %q, not a scratch key next to the lock", key)
				}
				if _, _, err := ns.Read(context.Background(), key); !errors.Is(err, driver.ErrNotExist) {
					t.Errorf("scratch key %q left behind: %v", key, err)
				}
			}
		})
	}
}

func TestCheckStoreWithoutDelete(t *testing.T) {
	ns := mem.Namespace(t.Name())
	rec := &recorder{Store: ns}
	var report strings.Builder
	if err := checkStore(context.Background(), rec, "a", &report); err != nil {
		t.Fatal(err)
	}
	if len(rec.keys) != 2 {
		t.Fatalf("wrote %v, want 2 scratch keys", rec.keys)
	}
	for key := range rec.keys {
		if !strings.Contains(report.String(), "this driver cannot delete: remove the scratch objects by hand: ") || !strings.Contains(report.String(), ns.Location(key)) {
			t.Errorf("the report does not name the scratch object %s left behind:\n%s", ns.Location(key), report.String())
		}
	}
}

// agesAhead is a store whose ages are 10s too old, as when the node that
// answers runs ahead of the one that stamped the write.
type agesAhead struct{ *mem.Store }

func (s agesAhead) ReadAge(ctx context.Context, key string) ([]byte, driver.Version, time.Duration, error) {
	data, v, age, err := s.Store.ReadAge(ctx, key)
	return data, v, age + 10*time.Second, err
}

// TestCheckStoreClock: check says whether the store's clock can be used
// for --store-clock, and warns without failing when it cannot.
func TestCheckStoreClock(t *testing.T) {
	for _, tt := range []struct {
		name  string
		store func(*mem.Store) driver.Store
		want  string
	}{
		{"consistent", func(s *mem.Store) driver.Store { return s }, "ok    the store's clock (--store-clock): a write sent "},
		{"ahead", func(s *mem.Store) driver.Store { return agesAhead{s} }, "warn  the store's clock (--store-clock): a write sent "},
		{"no ages", func(s *mem.Store) driver.Store { return &recorder{Store: s} }, "--    the store's clock (--store-clock): this driver tells no ages\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var report strings.Builder
			if err := checkStore(context.Background(), tt.store(mem.Namespace(t.Name())), "locks/a", &report); err != nil {
				t.Fatalf("checkStore: %v\n%s", err, report.String())
			}
			if !strings.Contains(report.String(), tt.want) {
				t.Errorf("report:\n%s\nwant a line with %q", report.String(), tt.want)
			}
		})
	}
}

// TestCheckLeavesOthersObjects: an object that check did not write, at
// the name it drew for a scratch object, is neither tested, reported as a
// scratch object nor removed: check draws another name.
func TestCheckLeavesOthersObjects(t *testing.T) {
	ns := mem.Namespace(t.Name())
	names := []string{"theirs1", "mine1", "theirs2", "mine2"}
	for _, name := range []string{"theirs1", "theirs2"} {
		if _, err := ns.Write(t.Context(), "locks/a.objsync-check-"+name, []byte("someone's "+name), ""); err != nil {
			t.Fatal(err)
		}
	}
	var report strings.Builder
	c := &checker{st: deletingRecorder{&recorder{Store: ns}}, w: &report, nonce: randomHex(), timed: true,
		suffix: func() string { name := names[0]; names = names[1:]; return name }}
	if err := c.run(t.Context(), "locks/a"); err != nil {
		t.Fatalf("check: %v\n%s", err, report.String())
	}
	for _, name := range []string{"theirs1", "theirs2"} {
		if data, _, err := ns.Read(t.Context(), "locks/a.objsync-check-"+name); err != nil || string(data) != "someone's "+name {
			t.Errorf("%s: %q, %v; want it untouched", name, data, err)
		}
	}
	for _, name := range []string{"mine1", "mine2"} {
		if _, _, err := ns.Read(t.Context(), "locks/a.objsync-check-"+name); !errors.Is(err, driver.ErrNotExist) {
			t.Errorf("scratch object %s left behind: %v", name, err)
		}
	}
	if !strings.Contains(report.String(), "removed the 2 scratch objects\n") || strings.Contains(report.String(), "FAIL") {
		t.Errorf("report:\n%s", report.String())
	}

	// Without delete, check names the objects it wrote, not the others.
	names = []string{"theirs1", "mine3", "theirs2", "mine4"}
	report.Reset()
	c = &checker{st: &recorder{Store: ns}, w: &report, nonce: randomHex(), timed: true,
		suffix: func() string { name := names[0]; names = names[1:]; return name }}
	if err := c.run(t.Context(), "locks/a"); err != nil || strings.Contains(report.String(), "theirs") || !strings.Contains(report.String(), "mine3") {
		t.Errorf("check: %v; report:\n%s", err, report.String())
	}
}
