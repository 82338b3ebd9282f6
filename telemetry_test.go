package objsync_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/mem"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// telemetry is an OpenTelemetry SDK that keeps what objsync records: a
// manual metric reader and an in-memory span exporter.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.InMemoryExporter
	opts   []objsync.Option
}

func newTelemetry(t *testing.T) *telemetry {
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewInMemoryExporter()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() {
		mp.Shutdown(context.Background())
		tp.Shutdown(context.Background())
	})
	return &telemetry{reader, spans, []objsync.Option{objsync.WithMeterProvider(mp), objsync.WithTracerProvider(tp)}}
}

// point is one data point: a sum's value, or a histogram's count.
type point struct {
	value int64
	sum   float64 // a histogram's sum
}

// collect returns every data point by metric name and attributes (written
// as "k=v,k=v", sorted by key).
func (tel *telemetry) collect(t *testing.T) map[string]map[string]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]point{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != "github.com/objsync/objsync" {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			points := map[string]point{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points[attrs(p.Attributes)] = point{value: p.Value}
				}
			case metricdata.Histogram[float64]:
				if m.Unit != "s" {
					t.Errorf("%s: unit %q, want s", m.Name, m.Unit)
				}
				for _, p := range d.DataPoints {
					points[attrs(p.Attributes)] = point{value: int64(p.Count), sum: p.Sum}
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
			got[m.Name] = points
		}
	}
	return got
}

func attrs(set attribute.Set) string {
	s := ""
	for i, kv := range set.ToSlice() {
		if i > 0 {
			s += ","
		}
		s += string(kv.Key) + "=" + kv.Value.String()
	}
	return s
}

// waitSpans waits a few seconds at most for n spans to have ended.
func (tel *telemetry) waitSpans(n int) {
	for end := time.Now().Add(5 * time.Second); len(tel.spans.GetSpans()) < n && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
}

// span returns the one ended span called name, or fails.
func (tel *telemetry) span(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range tel.spans.GetSpans() {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans called %s, want 1 (all: %v)", len(found), name, spanNames(tel.spans.GetSpans()))
	}
	return found[0]
}

func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	return names
}

func spanAttr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantPoint(t *testing.T, got map[string]map[string]point, metric, attributes string, value int64) {
	t.Helper()
	p, ok := got[metric][attributes]
	if !ok || p.value != value {
		t.Errorf("%s{%s} = %v (present %v), want %d; all points: %v", metric, attributes, p.value, ok, value, got[metric])
	}
}

// TestTelemetryLockUnlock: a Lock and its Unlock, read back from the SDK:
// each instrument, its attributes, and the spans with the fence and the
// number of store requests, which match the requests counted.
func TestTelemetryLockUnlock(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.Reset()
	tel := newTelemetry(t)
	m := objsync.NewMutex(s, "lock", tel.opts...)
	defer m.Close()
	ctx := context.Background()
	fence, err := m.Lock(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := tel.collect(t)
	wantPoint(t, got, "objsync.lock.held", "objsync.lock.kind=plain", 1)
	wantPoint(t, got, "objsync.lock.acquire.duration", "objsync.lock.kind=plain,objsync.outcome=acquired", 1)
	var lockRequests int64
	for _, p := range got["objsync.store.requests"] {
		lockRequests += p.value
	}
	lock := tel.span(t, "objsync.Lock")
	if v, _ := spanAttr(lock, "objsync.fence"); v.AsInt64() != fence {
		t.Errorf("Lock span: fence %v, want %d", v.String(), fence)
	}
	if v, _ := spanAttr(lock, "objsync.store.requests"); v.AsInt64() != lockRequests || lockRequests < 2 {
		t.Errorf("Lock span: %v store requests, counted %d (at least a read and a write)", v.String(), lockRequests)
	}
	if v, _ := spanAttr(lock, "objsync.outcome"); v.AsString() != "acquired" {
		t.Errorf("Lock span: outcome %v", v.String())
	}
	if lock.Status.Code == codes.Error {
		t.Errorf("Lock span: status %v", lock.Status)
	}

	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	got = tel.collect(t)
	wantPoint(t, got, "objsync.lock.held", "objsync.lock.kind=plain", 0)
	wantPoint(t, got, "objsync.lock.hold.duration", "objsync.hold.end=unlocked,objsync.lock.kind=plain", 1)
	wantPoint(t, got, "objsync.store.requests", "objsync.lock.kind=plain,objsync.outcome=not_found,objsync.store.operation=read", 1)
	wantPoint(t, got, "objsync.store.requests", "objsync.lock.kind=plain,objsync.outcome=ok,objsync.store.operation=create", 1)
	wantPoint(t, got, "objsync.store.requests", "objsync.lock.kind=plain,objsync.outcome=ok,objsync.store.operation=replace", 1)
	unlock := tel.span(t, "objsync.Unlock")
	if v, _ := spanAttr(unlock, "objsync.fence"); v.AsInt64() != fence {
		t.Errorf("Unlock span: fence %v, want %d", v.String(), fence)
	}
	if v, _ := spanAttr(unlock, "objsync.store.requests"); v.AsInt64() != 1 {
		t.Errorf("Unlock span: %v store requests, want 1", v.String())
	}
	if _, ok := spanAttr(unlock, "objsync.lock.name"); ok {
		t.Error("the lock's name is an attribute without WithLockNameAttribute")
	}
	if err := m.Unlock(ctx); !errors.Is(err, objsync.ErrNotHeld) {
		t.Fatalf("second Unlock: %v", err)
	}
	if st := tel.spans.GetSpans(); st[len(st)-1].Status.Code != codes.Error {
		t.Error("the span of an Unlock without a hold has no error")
	}
}

// TestTelemetryOutcomes: a TryLock that finds the lock held, a Lock whose
// context ends, and a refused TTL, each with its outcome; a hold ended by
// Close; the lock name attribute on request.
func TestTelemetryOutcomes(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	ctx := context.Background()
	holder := objsync.NewMutex(view{base, "holder"}, "lock")
	defer holder.Close()
	if _, err := holder.Lock(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	tel := newTelemetry(t)
	m := objsync.NewMutex(view{base, "other"}, "lock", append(tel.opts, objsync.WithLockNameAttribute())...)
	defer m.Close()
	name := "objsync.lock.kind=plain,objsync.lock.name=" + m.String()
	if ok, _, err := m.TryLock(ctx, time.Minute); ok || err != nil {
		t.Fatalf("TryLock of a held lock: %v, %v", ok, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(short, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held lock: %v", err)
	}
	if _, err := m.Lock(ctx, time.Millisecond); err == nil {
		t.Fatal("a TTL of 1ms was taken")
	}
	got := tel.collect(t)
	wantPoint(t, got, "objsync.lock.acquire.duration", "objsync.lock.kind=plain,objsync.lock.name="+m.String()+",objsync.outcome=not_acquired", 2)
	wantPoint(t, got, "objsync.lock.acquire.duration", "objsync.lock.kind=plain,objsync.lock.name="+m.String()+",objsync.outcome=error", 1)
	for _, s := range tel.spans.GetSpans() {
		outcome, _ := spanAttr(s, "objsync.outcome")
		if (s.Status.Code == codes.Error) != (outcome.AsString() == "error") {
			t.Errorf("span %s, outcome %s: status %v", s.Name, outcome.String(), s.Status)
		}
		if v, _ := spanAttr(s, "objsync.lock.name"); v.AsString() != m.String() {
			t.Errorf("span %s: lock name %q, want %q", s.Name, v.String(), m.String())
		}
	}

	holder.Unlock(ctx)
	if _, err := m.Lock(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	m.Close()
	got = tel.collect(t)
	wantPoint(t, got, "objsync.lock.hold.duration", "objsync.hold.end=closed,"+name, 1)
	wantPoint(t, got, "objsync.lock.held", name, 0)
}

// failingWrites is a process's view of a store whose writes fail, without
// reaching it, while fail is set.
type failingWrites struct {
	*mem.Store
	name string
	fail atomic.Int64 // the number of writes left to fail; -1: all
	err  error
}

func (f *failingWrites) Location(key string) string { return f.Store.Location(key) + "#" + f.name }

func (f *failingWrites) Write(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error) {
	if n := f.fail.Load(); n != 0 {
		if n > 0 {
			f.fail.Add(-1)
		}
		return "", f.err
	}
	return f.Store.Write(ctx, key, data, v)
}

// TestTelemetryRenewals: a renewal that needed retries is traced, linked
// to the Lock that took the lock; a hold whose renewals all fail is lost,
// counted with its reason; one replaced by another holder likewise.
func TestTelemetryRenewals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		fail   int64 // renewal writes that fail
		break_ bool  // another process breaks the lock
		reason string
	}{
		{name: "retried", fail: 2},
		{name: "not renewed", fail: -1, reason: "not_renewed"},
		{name: "taken over", break_: true, reason: "taken_over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := mem.Namespace(t.Name())
			base.Reset()
			tel := newTelemetry(t)
			store := &failingWrites{Store: base, name: "holder", err: driver.Retryable(fmt.Errorf("%s: permission denied", t.Name()))}
			m := objsync.NewMutex(store, "lock", tel.opts...)
			defer m.Close()
			const ttl = 600 * time.Millisecond
			if _, err := m.Lock(ctx, ttl); err != nil {
				t.Fatal(err)
			}
			store.fail.Store(tc.fail)
			if tc.break_ {
				other := objsync.NewMutex(view{base, "other"}, "lock")
				defer other.Close()
				if _, err := other.Break(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if tc.reason == "" {
				tel.waitSpans(2)
				if err := m.Err(); err != nil {
					t.Fatal(err)
				}
				renew := tel.span(t, "objsync.renew")
				if v, _ := spanAttr(renew, "objsync.renew.retries"); v.AsInt64() != tc.fail {
					t.Errorf("renewal span: %v retries, want %d", v.String(), tc.fail)
				}
				if v, _ := spanAttr(renew, "objsync.store.requests"); v.AsInt64() < 2*tc.fail+1 {
					t.Errorf("renewal span: %v store requests, want at least %d", v.String(), 2*tc.fail+1)
				}
				lock := tel.span(t, "objsync.Lock")
				if len(renew.Links) != 1 || renew.Links[0].SpanContext.SpanID() != lock.SpanContext.SpanID() {
					t.Errorf("renewal span links %v, want the Lock span %v", renew.Links, lock.SpanContext.SpanID())
				}
				return
			}
			select {
			case <-m.Done():
			case <-time.After(5 * ttl):
				t.Fatal("the hold did not end")
			}
			if !errors.Is(m.Err(), objsync.ErrLockLost) {
				t.Fatalf("Err: %v", m.Err())
			}
			if tc.fail != 0 && !strings.Contains(m.Err().Error(), "permission denied") {
				t.Errorf("Err does not say why renewals failed: %v", m.Err())
			}
			got := tel.collect(t)
			wantPoint(t, got, "objsync.lock.lost", "objsync.lock.kind=plain,objsync.lost.reason="+tc.reason, 1)
			wantPoint(t, got, "objsync.lock.hold.duration", "objsync.hold.end=lost,objsync.lock.kind=plain", 1)
			wantPoint(t, got, "objsync.lock.held", "objsync.lock.kind=plain", 0)
			tel.waitSpans(2) // the renewal's ends after Done closes
			renew := tel.span(t, "objsync.renew")
			if renew.Status.Code != codes.Error {
				t.Errorf("renewal span of a lost hold: status %v", renew.Status)
			}
		})
	}
}

// TestRenewalRetriedWithoutTelemetry: a renewal that needs retries, and
// one that never lands, without providers (a renewal's span was started
// without a tracer, a nil dereference).
func TestRenewalRetriedWithoutTelemetry(t *testing.T) {
	for _, fail := range []int64{2, -1} {
		base := mem.Namespace(fmt.Sprint(t.Name(), fail))
		base.Reset()
		store := &failingWrites{Store: base, name: "holder", err: driver.Retryable(errors.New("permission denied"))}
		m := objsync.NewMutex(store, "lock")
		const ttl = 300 * time.Millisecond
		if _, err := m.Lock(context.Background(), ttl); err != nil {
			t.Fatal(err)
		}
		store.fail.Store(fail)
		time.Sleep(ttl)
		if err := m.Err(); (err != nil) != (fail < 0) {
			t.Errorf("%d failed renewal writes: Err %v", fail, err)
		}
		m.Close()
	}
}

// TestTelemetryElection: a Campaign is traced and counted as a new term
// won; an observer counts the terms it sees begin, not the first leader
// it finds.
func TestTelemetryElection(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	candidates := newTelemetry(t)
	observer := newTelemetry(t)
	first := objsync.NewElection(objsync.NewMutex(view{base, "a"}, "lock", candidates.opts...), objsync.WithLeaderTTL(time.Minute))
	if _, err := first.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	watch := objsync.NewElection(objsync.NewMutex(view{base, "w"}, "lock", append(observer.opts, objsync.WithBackoff(10*time.Millisecond, 10*time.Millisecond))...))
	leaders := watch.Observe(ctx)
	if l := <-leaders; l.Value != "a" {
		t.Fatalf("observed %+v", l)
	}
	if err := first.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	second := objsync.NewElection(objsync.NewMutex(view{base, "b"}, "lock", candidates.opts...), objsync.WithLeaderTTL(time.Minute))
	if _, err := second.Campaign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if l := <-leaders; l.Value != "b" {
		t.Fatalf("observed %+v", l)
	}
	wantPoint(t, candidates.collect(t), "objsync.election.leader.changes", "objsync.election.leader=self,objsync.lock.kind=plain", 2)
	wantPoint(t, observer.collect(t), "objsync.election.leader.changes", "objsync.election.leader=other,objsync.lock.kind=plain", 1)
	var campaigns int
	for _, s := range candidates.spans.GetSpans() {
		if s.Name == "objsync.Campaign" {
			campaigns++
		}
	}
	if campaigns != 2 {
		t.Errorf("%d Campaign spans, want 2: %v", campaigns, spanNames(candidates.spans.GetSpans()))
	}
	second.Resign(ctx)
}

// TestTelemetryNilProvider: a nil provider is refused.
func TestTelemetryNilProvider(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.Reset()
	for _, opt := range []objsync.Option{objsync.WithMeterProvider(nil), objsync.WithTracerProvider(nil)} {
		m := objsync.NewMutex(s, "lock", opt)
		if _, _, err := m.TryLock(context.Background(), time.Minute); err == nil {
			t.Error("a nil provider was taken")
		}
		m.Close()
	}
}
