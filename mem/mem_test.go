package mem_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/driver/drivertest"
	"github.com/objsync/objsync/mem"
)

func TestConformance(t *testing.T) {
	drivertest.Run(t, func(t *testing.T) (driver.Store, string) {
		return mem.Namespace("conformance"), t.Name() + "/"
	})
}

func TestOpen(t *testing.T) {
	d, ok := driver.Lookup("mem")
	if !ok {
		t.Fatal("mem driver not registered")
	}
	s, key, err := d.Open("mem://ns-open/locks/a b")
	if err != nil {
		t.Fatal(err)
	}
	if key != "locks/a b" || s != mem.Namespace("ns-open") {
		t.Fatalf("Open = %v, %q", s, key)
	}
	if got := s.Location(key); got != "mem://ns-open/locks/a b" {
		t.Fatalf("Location = %q", got)
	}
	for dsn, want := range map[string]string{
		"mem://ns/k?latency=1s": `unknown DSN parameter "latency"`,
		"mem://ns/k?a=1;b=2":    "use '&'",
		"mem://ns":              "must have the form mem://NAMESPACE/KEY",
		"mem:///k":              "must have the form mem://NAMESPACE/KEY",
		"file:///tmp/k":         "must start with mem://",
	} {
		_, _, err := d.Open(dsn)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) err = %v, want it to contain %q", dsn, err, want)
		}
	}
}

func TestAmbiguousWrite(t *testing.T) {
	s := mem.Namespace(t.Name())
	ctx := context.Background()
	lost := errors.New("connection reset after send")
	s.SetFaults(func(op mem.Op, key string) mem.Fault {
		if op == mem.OpWrite {
			return mem.Fault{Err: lost, Applied: true}
		}
		return mem.Fault{}
	})
	if _, err := s.Write(ctx, "k", []byte("v"), ""); !errors.Is(err, lost) {
		t.Fatalf("Write err = %v, want the injected error", err)
	}
	s.SetFaults(nil)
	data, _, err := s.Read(ctx, "k")
	if err != nil || string(data) != "v" {
		t.Fatalf("after an applied fault Read = %q, %v; want the write applied", data, err)
	}
}

func TestFaultNotApplied(t *testing.T) {
	s := mem.Namespace(t.Name())
	ctx := context.Background()
	refused := driver.Retryable(errors.New("503"))
	s.SetFaults(func(mem.Op, string) mem.Fault { return mem.Fault{Err: refused} })
	if _, err := s.Write(ctx, "k", []byte("v"), ""); !driver.IsRetryable(err) {
		t.Fatalf("Write err = %v, want the retryable injected error", err)
	}
	if _, _, err := s.Read(ctx, "k"); !errors.Is(err, refused) {
		t.Fatalf("Read err = %v, want the injected error", err)
	}
	s.SetFaults(nil)
	if _, _, err := s.Read(ctx, "k"); !errors.Is(err, driver.ErrNotExist) {
		t.Fatalf("a refused write took effect: Read err = %v", err)
	}
}

func TestWriteInterval(t *testing.T) {
	s := mem.Namespace(t.Name())
	ctx := context.Background()
	s.SetWriteInterval(time.Hour)
	v, err := s.Write(ctx, "k", []byte("1"), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Write(ctx, "k", []byte("2"), v)
	if !errors.Is(err, mem.ErrRateLimited) || !driver.IsRetryable(err) {
		t.Fatalf("second write within the interval: err = %v, want retryable ErrRateLimited", err)
	}
	if _, err := s.Write(ctx, "other", []byte("1"), ""); err != nil {
		t.Fatalf("the limit is per key, yet another key got %v", err)
	}
	s.SetWriteInterval(0)
	if _, err := s.Write(ctx, "k", []byte("2"), v); err != nil {
		t.Fatalf("rate-limited write changed the version: %v", err)
	}
}

func TestLatencyAndCancel(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	if _, _, err := s.Read(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read err = %v, want context.Canceled", err)
	}
}

func TestRequests(t *testing.T) {
	s := mem.Namespace(t.Name())
	ctx := context.Background()
	v, _ := s.Write(ctx, "k", nil, "")
	_, _ = s.Write(ctx, "k", nil, "stale")
	for range 3 {
		_, _, _ = s.Read(ctx, "k")
	}
	_, _ = s.Write(ctx, "k", nil, v)
	if got, want := s.Requests(), (mem.Requests{Reads: 3, Writes: 3}); got != want {
		t.Fatalf("Requests = %+v, want %+v", got, want)
	}
	s.ResetRequests()
	if got := s.Requests().Total(); got != 0 {
		t.Fatalf("after reset Total = %d", got)
	}
}

func TestDelete(t *testing.T) {
	var s driver.Deleter = mem.Namespace(t.Name())
	st := s.(*mem.Store)
	ctx := context.Background()
	v1, err := st.Write(ctx, "k", []byte("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time the key is absent: not an error either
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, _, err := st.Read(ctx, "k"); !errors.Is(err, driver.ErrNotExist) {
		t.Fatalf("Read after Delete err = %v, want ErrNotExist", err)
	}
	v2, err := st.Write(ctx, "k", []byte("a"), "")
	if err != nil || v2 == v1 {
		t.Fatalf("create-only write after Delete = %q, %v; want a new version (old %q)", v2, err, v1)
	}
}

func ExampleStore_SetFaults() {
	s := mem.Namespace("example-faults")
	// Every write is applied and then reported as failed, as when the
	// answer to a successful request is lost.
	s.SetFaults(func(op mem.Op, key string) mem.Fault {
		if op == mem.OpWrite {
			return mem.Fault{Err: errors.New("timeout"), Applied: true}
		}
		return mem.Fault{}
	})
	_, err := s.Write(context.Background(), "k", []byte("hello"), "")
	data, _, _ := s.Read(context.Background(), "k")
	fmt.Println(err, string(data))
	// Output: timeout hello
}

// TestWriteIntervalWhileSet: WriteInterval may be read while another
// goroutine sets it (the race detector found it guarded by another mutex
// than SetWriteInterval's).
func TestWriteIntervalWhileSet(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.Reset()
	defer s.Reset()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 100 {
			s.SetWriteInterval(time.Duration(i) * time.Millisecond)
		}
	})
	for range 100 {
		if d := s.WriteInterval(); d < 0 || d >= 100*time.Millisecond {
			t.Fatalf("WriteInterval %v, never set", d)
		}
	}
	wg.Wait()
}
