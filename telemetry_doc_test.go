package objsync_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/mem"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTelemetryAsDocumented reads back from the SDK every metric and span
// of a run that makes each of them, and checks them against the package
// documentation and the README: every documented metric is recorded, with
// its instrument and unit, and nothing else; every attribute is one the
// documentation gives that metric, with a documented value; the store
// requests that fail a precondition or fail are counted as such; the spans
// are the documented ones, each with its lock kind and store requests, and
// the fence where the documentation says.
func TestTelemetryAsDocumented(t *testing.T) {
	doc := objsync.DocumentedMetrics(t, ".")
	base := mem.Namespace(t.Name())
	base.Reset()
	ctx := context.Background()
	tel := newTelemetry(t)

	// Lock and Unlock; TryLock of a held lock; a refused TTL; a hold
	// ended by Close.
	m := objsync.NewMutex(view{base, "m"}, "lock", tel.opts...)
	if _, err := m.Lock(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	other := objsync.NewMutex(view{base, "other"}, "lock")
	defer other.Close()
	if ok, _, err := other.TryLock(ctx, time.Minute); ok || err != nil {
		t.Fatalf("TryLock of a held lock: %v %v", ok, err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Lock(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := m.TryLock(ctx, time.Minute); ok || err != nil {
		t.Fatalf("TryLock of a held lock: %v %v", ok, err)
	}
	if _, err := m.Lock(ctx, time.Millisecond); err == nil {
		t.Fatal("a TTL of 1ms was taken")
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	ok, tryFence, err := m.TryLock(ctx, time.Minute)
	if !ok || err != nil {
		t.Fatalf("TryLock of a free lock: %v %v", ok, err)
	}
	m.Close()

	// A store that refuses a write: a request with the outcome error.
	failing := &failingWrites{Store: base, name: "failing", err: errors.New("access denied")}
	failing.fail.Store(1)
	f := objsync.NewMutex(failing, "failing", tel.opts...)
	defer f.Close()
	if _, _, err := f.TryLock(ctx, time.Minute); err == nil {
		t.Fatal("TryLock through a refused write succeeded")
	}

	// A hold taken over by Break: its renewal fails its precondition.
	lost := objsync.NewMutex(view{base, "lost"}, "taken", tel.opts...)
	defer lost.Close()
	if _, err := lost.Lock(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	breaker := objsync.NewMutex(view{base, "breaker"}, "taken")
	defer breaker.Close()
	if _, err := breaker.Break(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the broken hold did not end")
	}

	// An election: a term won, which an observer sees; the next term, won
	// by another candidate, it sees begin.
	em := objsync.NewMutex(view{base, "e"}, "election", tel.opts...)
	defer em.Close()
	e := objsync.NewElection(em, objsync.WithLeaderTTL(time.Minute))
	campaignFence, err := e.Campaign(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	obsCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	om := objsync.NewMutex(view{base, "o"}, "election", append(tel.opts, objsync.WithBackoff(5*time.Millisecond, 10*time.Millisecond))...)
	defer om.Close()
	leaders := objsync.NewElection(om).Observe(obsCtx)
	if l := <-leaders; l.Value != "e" {
		t.Fatalf("observed %+v", l)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	cm := objsync.NewMutex(view{base, "c"}, "election")
	defer cm.Close()
	c := objsync.NewElection(cm, objsync.WithLeaderTTL(time.Minute))
	if _, err := c.Campaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if l := <-leaders; l.Value != "c" {
		t.Fatalf("observed %+v", l)
	}
	cancel()
	// The renewal span of the hold taken over ends after Done closes.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if slices.ContainsFunc(tel.spans.GetSpans(), func(s tracetest.SpanStub) bool { return s.Name == "objsync.renew" }) {
			break
		}
	}

	// The metrics.
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, got := range sm.Metrics {
			recorded[got.Name] = true
			d, ok := doc[got.Name]
			if !ok {
				t.Errorf("%s is recorded, not documented", got.Name)
				continue
			}
			if got.Unit != d.Unit {
				t.Errorf("%s: unit %q, documented %q", got.Name, got.Unit, d.Unit)
			}
			var sets [][][]string // each point's attributes, as key, value
			switch data := got.Data.(type) {
			case metricdata.Histogram[float64]:
				if d.Instrument != "histogram" {
					t.Errorf("%s: a histogram, documented as %s", got.Name, d.Instrument)
				}
				for _, p := range data.DataPoints {
					sets = append(sets, attrPairs(p.Attributes.ToSlice()))
				}
			case metricdata.Sum[int64]:
				if instrument := map[bool]string{true: "counter", false: "up-down"}[data.IsMonotonic]; instrument != d.Instrument {
					t.Errorf("%s: a %s, documented as %s", got.Name, instrument, d.Instrument)
				}
				for _, p := range data.DataPoints {
					sets = append(sets, attrPairs(p.Attributes.ToSlice()))
				}
			default:
				t.Errorf("%s: data %T", got.Name, got.Data)
			}
			for _, set := range sets {
				keys := map[string]bool{}
				for _, kv := range set {
					k, v := kv[0], kv[1]
					keys[k] = true
					want := d.Attrs[k]
					if k == "objsync.lock.kind" {
						want = []string{"plain", "queue"}
					}
					if !slices.Contains(want, v) {
						t.Errorf("%s: attribute %s=%s, documented values %v", got.Name, k, v, want)
					}
				}
				for k := range d.Attrs {
					if !keys[k] {
						t.Errorf("%s: a point without %s: %v", got.Name, k, set)
					}
				}
				if !keys["objsync.lock.kind"] {
					t.Errorf("%s: a point without objsync.lock.kind: %v", got.Name, set)
				}
			}
		}
	}
	for name := range doc {
		if !recorded[name] {
			t.Errorf("%s is documented, not recorded", name)
		}
	}
	points := tel.collect(t)
	for _, outcome := range []string{"precondition_failed", "error"} {
		var n int64
		for attrs, p := range points["objsync.store.requests"] {
			if slices.Contains(strings.Split(attrs, ","), "objsync.outcome="+outcome) {
				n += p.value
			}
		}
		if n == 0 {
			t.Errorf("no store request counted with outcome %s: %v", outcome, points["objsync.store.requests"])
		}
	}
	wantPoint(t, points, "objsync.lock.acquire.duration", "objsync.lock.kind=plain,objsync.outcome=error", 2)
	wantPoint(t, points, "objsync.lock.lost", "objsync.lock.kind=plain,objsync.lost.reason=taken_over", 1)
	wantPoint(t, points, "objsync.election.leader.changes", "objsync.election.leader=self,objsync.lock.kind=plain", 1)
	wantPoint(t, points, "objsync.election.leader.changes", "objsync.election.leader=other,objsync.lock.kind=plain", 1)

	// The spans.
	documentedSpans := []string{"objsync.Lock", "objsync.TryLock", "objsync.Campaign", "objsync.Unlock", "objsync.renew"}
	names := map[string]int{}
	for _, s := range tel.spans.GetSpans() {
		names[s.Name]++
		if !slices.Contains(documentedSpans, s.Name) {
			t.Errorf("span %s is not documented", s.Name)
		}
		if v, ok := spanAttr(s, "objsync.lock.kind"); !ok || v.AsString() != "plain" {
			t.Errorf("span %s: objsync.lock.kind %v", s.Name, v.String())
		}
		if _, ok := spanAttr(s, "objsync.store.requests"); !ok {
			t.Errorf("span %s without objsync.store.requests", s.Name)
		}
		if _, ok := spanAttr(s, "objsync.lock.name"); ok {
			t.Errorf("span %s has objsync.lock.name without WithLockNameAttribute", s.Name)
		}
		outcome, _ := spanAttr(s, "objsync.outcome")
		fence, hasFence := spanAttr(s, "objsync.fence")
		switch {
		case s.Name == "objsync.Unlock" && s.Status.Code != codes.Error && !hasFence:
			t.Errorf("span %s of a release without objsync.fence", s.Name)
		case outcome.AsString() == "acquired" && !hasFence:
			t.Errorf("span %s acquired without objsync.fence", s.Name)
		case s.Name == "objsync.TryLock" && outcome.AsString() == "acquired" && fence.AsInt64() != tryFence:
			t.Errorf("span %s: fence %d, TryLock returned %d", s.Name, fence.AsInt64(), tryFence)
		case s.Name == "objsync.Campaign" && fence.AsInt64() != campaignFence:
			t.Errorf("span %s: fence %d, Campaign returned %d", s.Name, fence.AsInt64(), campaignFence)
		}
	}
	// Locks: m's two and lost's; TryLocks: m's two and f's; Unlocks: m's
	// Unlock and Close, e's Resign; the renewal of the hold taken over.
	want := map[string]int{"objsync.Lock": 3, "objsync.TryLock": 3, "objsync.Campaign": 1, "objsync.Unlock": 3, "objsync.renew": 1}
	for _, name := range documentedSpans {
		if names[name] < want[name] {
			t.Errorf("%d spans %s, want at least %d (all: %v)", names[name], name, want[name], names)
		}
	}
}

// attrPairs returns attributes as [key, value] pairs.
func attrPairs(kvs []attribute.KeyValue) [][]string {
	var out [][]string
	for _, kv := range kvs {
		out = append(out, []string{string(kv.Key), kv.Value.String()})
	}
	return out
}
