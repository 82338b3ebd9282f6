package objsync_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/countstore"
	"github.com/objsync/objsync/mem"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTelemetryCampaignHandoffSpanRequests: a Campaign handed the lock writes
// it once before returning (the confirm write); that request is made under
// the Campaign span, and must be on its objsync.store.requests.
func TestTelemetryCampaignHandoffSpanRequests(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	ctx := context.Background()
	am := objsync.NewMutex(view{base, "a"}, "lock")
	defer am.Close()
	a := objsync.NewElection(am, objsync.WithLeaderTTL(time.Minute))
	if _, err := a.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	tel := newTelemetry(t)
	cs := countstore.New(view{base, "b"})
	bm := objsync.NewMutex(cs, "lock", append(tel.opts, objsync.WithBackoff(5*time.Millisecond, 10*time.Millisecond))...)
	defer bm.Close()
	b := objsync.NewElection(bm, objsync.WithLeaderTTL(time.Minute))
	done := make(chan error, 1)
	go func() { _, err := b.Campaign(ctx, "b"); done <- err }()
	insp := objsync.NewMutex(view{base, "i"}, "lock")
	defer insp.Close()
	for {
		st, err := insp.Inspect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiters == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	made := cs.Counts().Total()
	c := tel.span(t, "objsync.Campaign")
	v, _ := spanAttr(c, "objsync.store.requests")
	if v.AsInt64() != made {
		t.Errorf("Campaign span: objsync.store.requests = %d, the Campaign made %d", v.AsInt64(), made)
	}
}

// heldByAnother returns a store whose lock another process holds, a queue
// lock if queue (then with the option that opens one).
func heldByAnother(t *testing.T, queue bool) (*mem.Store, []objsync.Option) {
	base := mem.Namespace(t.Name())
	base.Reset()
	var extra []objsync.Option
	if queue {
		extra = append(extra, objsync.WithQueue())
	}
	holder := objsync.NewMutex(view{base, "holder"}, "lock", extra...)
	t.Cleanup(func() { holder.Close() })
	if _, err := holder.Lock(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	return base, extra
}

// TestTelemetryAbandonSpanRequests: a Lock that gives up after joining the
// queue frees its place (abandon / leaveQueue) before it returns; those
// requests are made under the Lock span.
func TestTelemetryAbandonSpanRequests(t *testing.T) {
	for _, queue := range []bool{false, true} {
		t.Run(fmt.Sprint("queue=", queue), func(t *testing.T) {
			ctx := context.Background()
			base, extra := heldByAnother(t, queue)
			tel := newTelemetry(t)
			cs := countstore.New(view{base, "w"})
			m := objsync.NewMutex(cs, "lock", append(append(tel.opts, extra...), objsync.WithBackoff(5*time.Millisecond, 20*time.Millisecond))...)
			defer m.Close()
			short, cancel := context.WithCancel(ctx)
			defer time.AfterFunc(300*time.Millisecond, cancel).Stop()
			if _, err := m.Lock(short, time.Minute); !errors.Is(err, context.Canceled) {
				t.Fatalf("Lock: %v", err)
			}
			made := cs.Counts().Total()
			l := tel.span(t, "objsync.Lock")
			v, _ := spanAttr(l, "objsync.store.requests")
			if v.AsInt64() != made {
				t.Errorf("Lock span: objsync.store.requests = %d, the Lock made %d", v.AsInt64(), made)
			}
			var counted int64
			for _, p := range tel.collect(t)["objsync.store.requests"] {
				counted += p.value
			}
			if counted != made {
				t.Errorf("metric objsync.store.requests = %d, made %d", counted, made)
			}
		})
	}
}

// heldRecorder is a MeterProvider whose objsync.lock.held keeps the
// running sum and its minimum; an increment takes delay to land (a slow
// exporter's lock, or a preemption), the rest is no-op.
type heldRecorder struct {
	noop.MeterProvider
	c *heldCounter
}
type heldMeter struct {
	noop.Meter
	c *heldCounter
}
type heldCounter struct {
	noop.Int64UpDownCounter
	delay    time.Duration
	mu       sync.Mutex
	sum, min int64
}

func (p heldRecorder) Meter(string, ...metric.MeterOption) metric.Meter { return heldMeter{c: p.c} }
func (m heldMeter) Int64UpDownCounter(string, ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	return m.c, nil
}
func (c *heldCounter) Add(_ context.Context, incr int64, _ ...metric.AddOption) {
	if incr > 0 {
		time.Sleep(c.delay)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum += incr
	c.min = min(c.min, c.sum)
}

// TestTelemetryHeldNeverNegative: a hold that ends while Lock is counting it
// (startMetering) must not take objsync.lock.held below 0.
func TestTelemetryHeldNeverNegative(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	c := &heldCounter{delay: 300 * time.Millisecond}
	m := objsync.NewMutex(base, "lock", objsync.WithMeterProvider(heldRecorder{c: c}), objsync.WithoutRenewal())
	defer m.Close()
	if _, err := m.Lock(context.Background(), objsync.MinTTL); err != nil {
		t.Fatal(err)
	}
	<-m.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.min < 0 || c.sum != 0 {
		t.Errorf("objsync.lock.held went down to %d (now %d)", c.min, c.sum)
	}
}

// TestTelemetryLeaderChangesPerObserver: one new term is one leader change,
// however many Observe/Watch calls the Election has running, and a term
// won by this Election is counted once (self), not also as other.
func TestTelemetryLeaderChangesPerObserver(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xm := objsync.NewMutex(view{base, "x"}, "lock")
	defer xm.Close()
	x := objsync.NewElection(xm, objsync.WithLeaderTTL(time.Minute))
	if _, err := x.Campaign(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	tel := newTelemetry(t)
	em := objsync.NewMutex(view{base, "e"}, "lock", append(tel.opts, objsync.WithBackoff(5*time.Millisecond, 10*time.Millisecond))...)
	defer em.Close()
	e := objsync.NewElection(em, objsync.WithLeaderTTL(time.Minute))
	o1, o2 := e.Observe(ctx), e.Watch(ctx)
	for _, o := range []<-chan objsync.Leader{o1, o2} {
		if l := <-o; l.Value != "x" {
			t.Fatalf("observed %+v", l)
		}
	}
	if err := x.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Campaign(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	for _, o := range []<-chan objsync.Leader{o1, o2} {
		for l := range o {
			if l.Value == "e" {
				break
			}
		}
	}
	got := tel.collect(t)["objsync.election.leader.changes"]
	t.Logf("leader changes: %v", got)
	var total int64
	for _, p := range got {
		total += p.value
	}
	if total != 1 {
		t.Errorf("one new term (won by this Election) counted %d times: %v", total, got)
	}
}

// TestTelemetryLockSpanRace: with a tracer and no meter, a renewal that needs
// retries reads the Lock span's context that lockTraced writes after the
// renewal goroutine started.
func TestTelemetryLockSpanRace(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	store := &secondWriteFails{Store: base}
	m := objsync.NewMutex(store, "lock", objsync.WithTracerProvider(tp))
	defer m.Close()
	if _, err := m.Lock(context.Background(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		for _, s := range spans.GetSpans() {
			if s.Name == "objsync.renew" {
				if len(s.Links) != 1 {
					t.Errorf("renew span links: %v", s.Links)
				}
				return
			}
		}
	}
	t.Fatal("no renew span")
}

// TestTelemetryUnlockMidRetry: Unlock while a renewal is retrying ends the
// renewal's span, without an error status; the hold ends as unlocked.
func TestTelemetryUnlockMidRetry(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	tel := newTelemetry(t)
	store := &failingWrites{Store: base, name: "h", err: driver.Retryable(errors.New("flaky"))}
	m := objsync.NewMutex(store, "lock", tel.opts...)
	defer m.Close()
	const ttl = 2 * time.Second
	if _, err := m.Lock(context.Background(), ttl); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(-1)
	time.Sleep(ttl * 45 / 100) // past the first renewal's write
	store.fail.Store(0)
	if err := m.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	tel.waitSpans(3)
	r := tel.span(t, "objsync.renew")
	if r.Status.Code == codes.Error {
		t.Errorf("renew span stopped by Unlock: status %v", r.Status)
	}
	got := tel.collect(t)
	wantPoint(t, got, "objsync.lock.hold.duration", "objsync.hold.end=unlocked,objsync.lock.kind=plain", 1)
	wantPoint(t, got, "objsync.lock.held", "objsync.lock.kind=plain", 0)
}

// TestTelemetryLostReasons: not_a_lock, expired, and a deleted object.
func TestTelemetryLostReasons(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		renew        bool
		do           func(s *mem.Store) error
	}{
		{"not a lock", "not_a_lock", true, func(s *mem.Store) error {
			data, v, err := s.Read(context.Background(), "lock")
			_ = data
			if err != nil {
				return err
			}
			_, err = s.Write(context.Background(), "lock", []byte(`{"format":"something else"}`), v)
			return err
		}},
		{"expired", "expired", false, func(*mem.Store) error { return nil }},
		{"deleted", "taken_over", true, func(s *mem.Store) error { return s.Delete(context.Background(), "lock") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := mem.Namespace(t.Name())
			base.Reset()
			tel := newTelemetry(t)
			opts := tel.opts
			if !tc.renew {
				opts = append(opts, objsync.WithoutRenewal())
			}
			m := objsync.NewMutex(view{base, "h"}, "lock", opts...)
			defer m.Close()
			if _, err := m.Lock(context.Background(), 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if err := tc.do(base); err != nil {
				t.Fatal(err)
			}
			select {
			case <-m.Done():
			case <-time.After(3 * time.Second):
				t.Fatal("not lost")
			}
			t.Logf("Err: %v", m.Err())
			got := tel.collect(t)
			wantPoint(t, got, "objsync.lock.lost", "objsync.lock.kind=plain,objsync.lost.reason="+tc.reason, 1)
			wantPoint(t, got, "objsync.lock.held", "objsync.lock.kind=plain", 0)
			wantPoint(t, got, "objsync.lock.hold.duration", "objsync.hold.end=lost,objsync.lock.kind=plain", 1)
		})
	}
}

// TestTelemetryStress: Locks racing Close, Unlocks racing loss, plain and
// queue: held ends at 0 and every returned hold ends once.
func TestTelemetryStress(t *testing.T) {
	for _, queue := range []bool{false, true} {
		t.Run(fmt.Sprint("queue=", queue), func(t *testing.T) {
			base := mem.Namespace(t.Name())
			base.Reset()
			tel := newTelemetry(t)
			kind := "plain"
			opts := append(tel.opts, objsync.WithoutRenewal())
			if queue {
				kind = "queue"
				opts = append(opts, objsync.WithQueue())
			}
			var holds atomic.Int64
			var wg sync.WaitGroup
			for i := 0; i < 20; i++ {
				m := objsync.NewMutex(view{base, fmt.Sprint("p", i)}, "lock", opts...)
				wg.Add(2)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					if _, err := m.Lock(ctx, objsync.MinTTL); err == nil {
						holds.Add(1)
						time.Sleep(time.Duration(i%5) * 20 * time.Millisecond)
						m.Unlock(context.Background())
					}
				}()
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(i) * 15 * time.Millisecond)
					m.Close()
				}()
			}
			wg.Wait()
			got := tel.collect(t)
			k := "objsync.lock.kind=" + kind
			wantPoint(t, got, "objsync.lock.held", k, 0)
			var ended int64
			for _, p := range got["objsync.lock.hold.duration"] {
				ended += p.value
			}
			if ended != holds.Load() {
				t.Errorf("%d holds, %d ended: %v", holds.Load(), ended, got["objsync.lock.hold.duration"])
			}
			t.Logf("holds %d: %v lost %v", holds.Load(), got["objsync.lock.hold.duration"], got["objsync.lock.lost"])
		})
	}
}

// secondWriteFails fails the second write made through it (the first
// renewal's), retryably; nothing the test goroutine does after Lock
// synchronizes with the renewal goroutine.
type secondWriteFails struct {
	*mem.Store
	n atomic.Int64
}

func (f *secondWriteFails) Location(key string) string { return f.Store.Location(key) + "#2nd" }
func (f *secondWriteFails) Write(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error) {
	if f.n.Add(1) == 2 {
		return "", driver.Retryable(errors.New("flaky"))
	}
	return f.Store.Write(ctx, key, data, v)
}

// TestTelemetryCampaignConfirmFails: a Campaign handed the lock whose confirm
// write fails until the hand-off lease runs out returns the loss; no hold
// is counted, every span ends.
func TestTelemetryCampaignConfirmFails(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	ctx := context.Background()
	am := objsync.NewMutex(view{base, "a"}, "lock")
	defer am.Close()
	a := objsync.NewElection(am, objsync.WithLeaderTTL(2*time.Second))
	if _, err := a.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	tel := newTelemetry(t)
	store := &failingWrites{Store: base, name: "b", err: errors.New("denied")}
	bm := objsync.NewMutex(store, "lock", append(tel.opts, objsync.WithBackoff(5*time.Millisecond, 10*time.Millisecond))...)
	defer bm.Close()
	b := objsync.NewElection(bm, objsync.WithLeaderTTL(2*time.Second))
	done := make(chan error, 1)
	go func() { _, err := b.Campaign(ctx, "b"); done <- err }()
	insp := objsync.NewMutex(view{base, "i"}, "lock")
	defer insp.Close()
	for {
		st, _ := insp.Inspect(ctx)
		if st.Waiters == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	store.fail.Store(-1)
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	err := <-done
	t.Logf("Campaign: %v", err)
	got := tel.collect(t)
	t.Logf("%v", got)
	if p := got["objsync.lock.held"]["objsync.lock.kind=plain"]; p.value != 0 {
		t.Errorf("held %d", p.value)
	}
	for _, s := range tel.spans.GetSpans() {
		r, _ := spanAttr(s, "objsync.store.requests")
		t.Logf("span %s status %v requests %v links %d", s.Name, s.Status.Code, r.AsInt64(), len(s.Links))
	}
}

// TestTelemetryInspectBreakRequests: Inspect and Break count each request
// once, plain and queue.
func TestTelemetryInspectBreakRequests(t *testing.T) {
	for _, queue := range []bool{false, true} {
		t.Run(fmt.Sprint("queue=", queue), func(t *testing.T) {
			ctx := context.Background()
			base, extra := heldByAnother(t, queue)
			tel := newTelemetry(t)
			cs := countstore.New(view{base, "b"})
			m := objsync.NewMutex(cs, "lock", append(tel.opts, extra...)...)
			defer m.Close()
			if _, err := m.Inspect(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Break(ctx); err != nil {
				t.Fatal(err)
			}
			var counted int64
			got := tel.collect(t)["objsync.store.requests"]
			for _, p := range got {
				counted += p.value
			}
			if counted != cs.Counts().Total() {
				t.Errorf("counted %d, made %d: %v", counted, cs.Counts().Total(), got)
			}
			t.Logf("%v", got)
		})
	}
}

// TestTelemetryUnlockThenClose: a hold that the caller's Unlock (Resign)
// ends, Unlock having been called before Close, ends as unlocked.
func TestTelemetryUnlockThenClose(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	tel := newTelemetry(t)
	m := objsync.NewMutex(base, "lock", tel.opts...)
	e := objsync.NewElection(m, objsync.WithLeaderTTL(5*time.Second))
	ctx := context.Background()
	if _, err := e.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	base.SetLatency(300 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); e.Proclaim(ctx, "b") }() // holds the hold's writeMu
	time.Sleep(50 * time.Millisecond)
	go func() { defer wg.Done(); e.Resign(ctx) }() // the caller ends the hold
	time.Sleep(50 * time.Millisecond)
	go func() { defer wg.Done(); m.Close() }()
	wg.Wait()
	wantPoint(t, tel.collect(t), "objsync.lock.hold.duration", "objsync.hold.end=unlocked,objsync.lock.kind=plain", 1)
}

// TestTelemetryProclaimRetried: a Proclaim whose first write fails is traced
// as objsync.renew, linked to the Campaign, ended without error.
func TestTelemetryProclaimRetried(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	tel := newTelemetry(t)
	store := &failingWrites{Store: base, name: "h", err: driver.Retryable(errors.New("flaky"))}
	m := objsync.NewMutex(store, "lock", tel.opts...)
	defer m.Close()
	e := objsync.NewElection(m, objsync.WithLeaderTTL(10*time.Second))
	ctx := context.Background()
	if _, err := e.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(1)
	if err := e.Proclaim(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	r := tel.span(t, "objsync.renew")
	c := tel.span(t, "objsync.Campaign")
	retries, _ := spanAttr(r, "objsync.renew.retries")
	reqs, _ := spanAttr(r, "objsync.store.requests")
	if r.Status.Code == codes.Error || retries.AsInt64() != 1 || reqs.AsInt64() != 3 || len(r.Links) != 1 || r.Links[0].SpanContext.SpanID() != c.SpanContext.SpanID() {
		t.Errorf("renew span: status %v retries %v requests %v links %v", r.Status, retries.AsInt64(), reqs.AsInt64(), r.Links)
	}
}
