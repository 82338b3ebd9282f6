// Package mem is an in-process objsync driver for tests and benchmarks.
//
// Import it for its side effect of registering the driver "mem":
//
//	import _ "github.com/objsync/objsync/mem"
//
// DSN grammar:
//
//	mem://NAMESPACE/KEY
//
// NAMESPACE names a process-wide store: every DSN with the same namespace
// shares it, and it lives until the process exits. KEY is the rest of the
// path and may contain slashes. No query parameters are accepted.
//
// A [Store] also carries test knobs that a real store cannot offer: injected
// latency, injected failures (including the ambiguous write, applied and then
// reported as failed), a per-key write-rate limit like the one GCS and R2
// enforce, and request counters. Get a namespace's store with [Namespace].
package mem

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/objsync/objsync/driver"
)

func init() { driver.Register("mem", memDriver{}) }

type memDriver struct{}

// Open parses mem://NAMESPACE/KEY.
func (memDriver) Open(dsn string) (driver.Store, string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("mem: bad DSN: %w", err)
	}
	if u.Scheme != "mem" {
		return nil, "", fmt.Errorf("mem: DSN %q must start with mem://", driver.Redact(dsn))
	}
	if _, err := driver.ParseQuery(u.RawQuery); err != nil {
		return nil, "", fmt.Errorf("mem: %w", err)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if u.Host == "" || key == "" {
		return nil, "", fmt.Errorf("mem: DSN %q must have the form mem://NAMESPACE/KEY", driver.Redact(dsn))
	}
	return Namespace(u.Host), key, nil
}

var namespaces driver.Shared[string, *Store]

// Namespace returns the process-wide store named name, creating it empty on
// first use. It is the store that mem://name/... DSNs open.
func Namespace(name string) *Store {
	s, _ := namespaces.Get(name, func() (*Store, error) {
		return &Store{name: name, objects: map[string]object{}}, nil
	})
	return s
}

// Op is the kind of a request.
type Op int

// The kinds of requests.
const (
	OpRead Op = iota
	OpWrite
)

func (op Op) String() string {
	if op == OpRead {
		return "read"
	}
	return "write"
}

// A Fault is what an injected failure does to one request.
type Fault struct {
	// Err is returned to the caller. A nil Err means no fault.
	Err error
	// Applied makes a write take effect before Err is returned: the
	// ambiguous write of a request whose answer was lost. Ignored for reads.
	Applied bool
}

// ErrRateLimited is returned, marked retryable, by writes that exceed the
// per-key write rate set with [Store.SetWriteInterval].
var ErrRateLimited = errors.New("mem: per-key write rate exceeded")

// Requests counts the requests a store has answered, faults included.
type Requests struct {
	Reads, Writes int64
}

// Total is Reads plus Writes.
func (r Requests) Total() int64 { return r.Reads + r.Writes }

type object struct {
	data    []byte
	version driver.Version
	written time.Time // monotonic; for the rate limit and ReadAge
}

// Store is one namespace of the in-process store. It is safe for
// concurrent use.
type Store struct {
	name string

	mu      sync.Mutex
	objects map[string]object
	serial  uint64 // makes every version unique within the store

	reads, writes atomic.Int64

	knobsMu       sync.Mutex
	latency       time.Duration
	fault         func(op Op, key string) Fault
	writeInterval time.Duration
}

// Location returns mem://NAMESPACE/KEY.
func (s *Store) Location(key string) string { return "mem://" + s.name + "/" + key }

// SetLatency makes every request wait d before it is served (and before a
// fault is injected). A cancelled context cuts the wait short.
func (s *Store) SetLatency(d time.Duration) {
	s.knobsMu.Lock()
	defer s.knobsMu.Unlock()
	s.latency = d
}

// SetFaults installs fn, which is asked before every request and may fail
// it; nil removes it. fn is called without the store's lock held and may be
// called concurrently.
func (s *Store) SetFaults(fn func(op Op, key string) Fault) {
	s.knobsMu.Lock()
	defer s.knobsMu.Unlock()
	s.fault = fn
}

// WriteInterval implements driver.WriteLimiter: the interval set with
// SetWriteInterval, 0 until then.
func (s *Store) WriteInterval() time.Duration {
	s.knobsMu.Lock()
	defer s.knobsMu.Unlock()
	return s.writeInterval
}

// SetWriteInterval limits writes to one per key every d: a write sooner than
// d after the key's last successful write fails with [ErrRateLimited],
// marked retryable, and changes nothing. Zero removes the limit.
func (s *Store) SetWriteInterval(d time.Duration) {
	s.knobsMu.Lock()
	defer s.knobsMu.Unlock()
	s.writeInterval = d
}

// Requests returns the number of requests served since the store was
// created or last reset.
func (s *Store) Requests() Requests {
	return Requests{Reads: s.reads.Load(), Writes: s.writes.Load()}
}

// ResetRequests sets the request counters to zero.
func (s *Store) ResetRequests() {
	s.reads.Store(0)
	s.writes.Store(0)
}

// Reset removes every object and knob from the store and zeroes its
// counters.
func (s *Store) Reset() {
	s.mu.Lock()
	s.objects = map[string]object{}
	s.mu.Unlock()
	s.knobsMu.Lock()
	s.latency, s.fault, s.writeInterval = 0, nil, 0
	s.knobsMu.Unlock()
	s.ResetRequests()
}

// before applies latency and asks the fault hook. It returns the fault to
// inject (if any) and the write interval in force.
func (s *Store) before(ctx context.Context, op Op, key string) (Fault, time.Duration, error) {
	s.knobsMu.Lock()
	latency, fault, interval := s.latency, s.fault, s.writeInterval
	s.knobsMu.Unlock()
	if err := ctx.Err(); err != nil {
		return Fault{}, 0, err
	}
	if latency > 0 {
		timer := time.NewTimer(latency)
		select {
		case <-ctx.Done():
			timer.Stop()
			return Fault{}, 0, ctx.Err()
		case <-timer.C:
		}
	}
	var f Fault
	if fault != nil {
		f = fault(op, key)
	}
	return f, interval, nil
}

// Read implements driver.Store.
func (s *Store) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	data, v, _, err := s.ReadAge(ctx, key)
	return data, v, err
}

// ReadAge implements driver.AgeReader: the time since the object's last
// write, on this process's monotonic clock (the store's).
func (s *Store) ReadAge(ctx context.Context, key string) ([]byte, driver.Version, time.Duration, error) {
	s.reads.Add(1)
	f, _, err := s.before(ctx, OpRead, key)
	if err != nil {
		return nil, "", 0, err
	}
	if f.Err != nil {
		return nil, "", 0, f.Err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return nil, "", 0, fmt.Errorf("%s: %w", s.Location(key), driver.ErrNotExist)
	}
	return append([]byte(nil), o.data...), o.version, max(time.Since(o.written), 0), nil
}

// Write implements driver.Store.
func (s *Store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	s.writes.Add(1)
	f, interval, err := s.before(ctx, OpWrite, key)
	if err != nil {
		return "", err
	}
	if f.Err != nil && !f.Applied {
		return "", f.Err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, exists := s.objects[key]
	if o.version != ifVersion { // an absent object has the empty version
		return "", fmt.Errorf("%s: %w", s.Location(key), driver.ErrPrecondition)
	}
	now := time.Now()
	if interval > 0 && exists && now.Sub(o.written) < interval {
		return "", driver.Retryable(fmt.Errorf("%s: %w", s.Location(key), ErrRateLimited))
	}
	s.serial++
	o = object{
		data:    append([]byte(nil), data...),
		version: driver.Version(strconv.FormatUint(s.serial, 10)),
		written: now,
	}
	s.objects[key] = o
	if f.Err != nil {
		return "", f.Err
	}
	return o.version, nil
}

// Delete implements driver.Deleter. It is not counted in Requests, and the
// latency and fault knobs do not apply to it.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects, key)
	return nil
}
