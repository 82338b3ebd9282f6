package countstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/countstore"
	"github.com/objsync/objsync/mem"
)

func TestCounts(t *testing.T) {
	ctx := context.Background()
	m := mem.Namespace(t.Name())
	m.Reset()
	injected := errors.New("injected")
	var failNext bool
	var mu sync.Mutex
	m.SetFaults(func(mem.Op, string) mem.Fault {
		mu.Lock()
		defer mu.Unlock()
		if failNext {
			failNext = false
			return mem.Fault{Err: driver.Retryable(injected)}
		}
		return mem.Fault{}
	})
	fail := func() { mu.Lock(); failNext = true; mu.Unlock() }
	s := countstore.New(m)

	if _, _, err := s.Read(ctx, "k"); !errors.Is(err, driver.ErrNotExist) {
		t.Fatalf("read of an absent key: %v", err)
	}
	v, err := s.Write(ctx, "k", []byte("1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, "k", []byte("2"), ""); !errors.Is(err, driver.ErrPrecondition) {
		t.Fatalf("create-only write on an existing key: %v", err)
	}
	if _, err := s.Write(ctx, "k", []byte("3"), v); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Read(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	fail()
	if _, _, err := s.Read(ctx, "k"); !errors.Is(err, injected) {
		t.Fatalf("read with a fault: %v", err)
	}
	fail()
	if _, err := s.Write(ctx, "k", []byte("4"), v); !errors.Is(err, injected) {
		t.Fatalf("write with a fault: %v", err)
	}

	got := s.Counts()
	want := countstore.Counts{Reads: 2, Writes: 2, Preconditions: 1, ReadErrors: 1, WriteErrors: 1}
	if got != want {
		t.Fatalf("Counts() = %+v, want %+v", got, want)
	}
	if got.Total() != 7 || got.Errors() != 2 || got.ReadRequests() != 3 || got.WriteRequests() != 4 {
		t.Errorf("Total %d, Errors %d, ReadRequests %d, WriteRequests %d; want 7, 2, 3, 4",
			got.Total(), got.Errors(), got.ReadRequests(), got.WriteRequests())
	}
	// The store saw exactly what was counted.
	if r := m.Requests(); r.Reads != got.ReadRequests() || r.Writes != got.WriteRequests() {
		t.Errorf("the store served %+v; counted %d reads and %d writes", r, got.ReadRequests(), got.WriteRequests())
	}
	if sum := got.Add(got).Sub(got); sum != got {
		t.Errorf("c + c - c = %+v, want %+v", sum, got)
	}
	if loc := s.Location("k"); loc != m.Location("k") {
		t.Errorf("Location = %q, want the wrapped store's %q", loc, m.Location("k"))
	}
}

// TestConcurrent counts requests from many goroutines exactly (run it
// with -race).
func TestConcurrent(t *testing.T) {
	m := mem.Namespace(t.Name())
	m.Reset()
	s := countstore.New(m)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				s.Read(context.Background(), "k")
				s.Write(context.Background(), "k", []byte("x"), "")
			}
		})
	}
	wg.Wait()
	c := s.Counts()
	if c.Reads != 800 || c.Writes != 1 || c.Preconditions != 799 {
		t.Errorf("Counts() = %+v; want 800 reads, 1 write, 799 failed preconditions", c)
	}
}
