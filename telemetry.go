package objsync

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/objsync/objsync/driver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names objsync's meter and tracer.
const instrumentationName = "github.com/objsync/objsync"

// The attributes of objsync's metrics and spans, listed in the package
// documentation ("Metrics and traces"). Each takes a handful of values, so
// that cardinality stays bounded; only objsync.lock.name, which the caller
// asks for with WithLockNameAttribute, grows with the number of locks.
const (
	attrKind       = attribute.Key("objsync.lock.kind")       // plain, queue
	attrName       = attribute.Key("objsync.lock.name")       // the lock's location
	attrOutcome    = attribute.Key("objsync.outcome")         // see the outcome constants
	attrHoldEnd    = attribute.Key("objsync.hold.end")        // unlocked, lost, closed
	attrLostReason = attribute.Key("objsync.lost.reason")     // see the lostReason constants
	attrOperation  = attribute.Key("objsync.store.operation") // read, create, replace
	attrLeader     = attribute.Key("objsync.election.leader") // self, other
	attrFence      = attribute.Key("objsync.fence")           // spans only
	attrRequests   = attribute.Key("objsync.store.requests")  // spans only
	attrRetries    = attribute.Key("objsync.renew.retries")   // spans only
)

// Outcomes of an acquisition (objsync.lock.acquire.duration) and of a
// store request (objsync.store.requests).
const (
	outcomeAcquired     = "acquired"
	outcomeNotAcquired  = "not_acquired" // TryLock found it held; ctx ended; Close
	outcomeError        = "error"
	outcomeOK           = "ok"
	outcomePrecondition = "precondition_failed"
	outcomeNotFound     = "not_found"
)

// lostReason says why a hold was lost (objsync.lock.lost).
type lostReason string

const (
	lostTakenOver  lostReason = "taken_over"  // another holder's state replaced ours
	lostNotRenewed lostReason = "not_renewed" // no renewal landed before the loss notice
	lostExpired    lostReason = "expired"     // WithoutRenewal: the lease ran out
	lostNotALock   lostReason = "not_a_lock"  // the object was replaced by something else
)

// telemetry is a Mutex's metrics and spans. Without a provider its part
// does nothing, not even allocate: a Lock without telemetry costs what it
// did before.
type telemetry struct {
	tracer trace.Tracer // nil: no tracing
	attrs  []attribute.KeyValue
	meters bool // instruments are recorded

	acquireDuration metric.Float64Histogram
	holdDuration    metric.Float64Histogram
	held            metric.Int64UpDownCounter
	lost            metric.Int64Counter
	requests        metric.Int64Counter
	leaderChanges   metric.Int64Counter
	// The attribute sets of the measurements, made once: the Mutex's own
	// (kind, name), and with each value of the other attributes.
	base metric.MeasurementOption
	sets map[attribute.KeyValue]metric.MeasurementOption
	pair map[[2]attribute.KeyValue]metric.MeasurementOption // store requests
}

// newTelemetry makes the instruments of a Mutex on loc. An instrument the
// provider refuses is reported by the provider's error handler and left a
// no-op: telemetry never stops a lock.
func newTelemetry(o *options, loc string) *telemetry {
	kind := "plain"
	if o.queue {
		kind = "queue"
	}
	t := &telemetry{attrs: []attribute.KeyValue{attrKind.String(kind)}}
	if o.nameAttribute {
		t.attrs = append(t.attrs, attrName.String(loc))
	}
	if o.tracerProvider != nil {
		t.tracer = o.tracerProvider.Tracer(instrumentationName)
	}
	if o.meterProvider == nil {
		return t
	}
	t.meters = true
	meter := o.meterProvider.Meter(instrumentationName)
	t.acquireDuration, _ = meter.Float64Histogram("objsync.lock.acquire.duration", metric.WithUnit("s"),
		metric.WithDescription("How long Lock, TryLock and Campaign took, by outcome."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
	t.holdDuration, _ = meter.Float64Histogram("objsync.lock.hold.duration", metric.WithUnit("s"),
		metric.WithDescription("How long holds lasted, by how they ended."),
		metric.WithExplicitBucketBoundaries(0.1, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4*3600, 24*3600))
	t.held, _ = meter.Int64UpDownCounter("objsync.lock.held", metric.WithUnit("{hold}"),
		metric.WithDescription("Holds in force."))
	t.lost, _ = meter.Int64Counter("objsync.lock.lost", metric.WithUnit("{hold}"),
		metric.WithDescription("Holds lost, by reason."))
	t.requests, _ = meter.Int64Counter("objsync.store.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests to the store, by operation and outcome."))
	t.leaderChanges, _ = meter.Int64Counter("objsync.election.leader.changes", metric.WithUnit("{term}"),
		metric.WithDescription("New terms: won by this candidate's Campaign (self), or seen by Observe and Watch (other)."))

	t.base = t.with()
	t.sets = map[attribute.KeyValue]metric.MeasurementOption{}
	for _, kv := range []attribute.KeyValue{
		attrOutcome.String(outcomeAcquired), attrOutcome.String(outcomeNotAcquired), attrOutcome.String(outcomeError),
		attrHoldEnd.String(holdUnlocked), attrHoldEnd.String(holdLost), attrHoldEnd.String(holdClosed),
		attrLostReason.String(string(lostTakenOver)), attrLostReason.String(string(lostNotRenewed)),
		attrLostReason.String(string(lostExpired)), attrLostReason.String(string(lostNotALock)),
		attrLeader.String("self"), attrLeader.String("other"),
	} {
		t.sets[kv] = t.with(kv)
	}
	t.pair = map[[2]attribute.KeyValue]metric.MeasurementOption{}
	for _, op := range []string{opRead, opCreate, opReplace} {
		for _, outcome := range []string{outcomeOK, outcomePrecondition, outcomeNotFound, outcomeError} {
			kvs := [2]attribute.KeyValue{attrOperation.String(op), attrOutcome.String(outcome)}
			t.pair[kvs] = t.with(kvs[:]...)
		}
	}
	return t
}

// Store operations (objsync.store.operation) and how holds end
// (objsync.hold.end).
const (
	opRead       = "read"
	opCreate     = "create"
	opReplace    = "replace"
	holdUnlocked = "unlocked"
	holdLost     = "lost"
	holdClosed   = "closed"
)

// with returns the Mutex's attributes and more, as a measurement option.
func (t *telemetry) with(more ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(slices.Clone(t.attrs), more...)...))
}

// requestCount is the number of store requests made under a span, carried
// by its context; each request counts for the spans it is made under.
type requestCount struct {
	n      atomic.Int64
	parent *requestCount // of the span this one is made under
}

type requestCountKey struct{}

// request records a store request made with ctx: its operation and how the
// store answered.
func (t *telemetry) request(ctx context.Context, op string, err error) {
	c, _ := ctx.Value(requestCountKey{}).(*requestCount)
	for ; c != nil; c = c.parent {
		c.n.Add(1)
	}
	if !t.meters {
		return
	}
	outcome := outcomeOK
	switch {
	case err == nil:
	case errors.Is(err, driver.ErrPrecondition):
		outcome = outcomePrecondition
	case errors.Is(err, driver.ErrNotExist):
		outcome = outcomeNotFound
	default:
		outcome = outcomeError
	}
	t.requests.Add(ctx, 1, t.pair[[2]attribute.KeyValue{attrOperation.String(op), attrOutcome.String(outcome)}])
}

// span is an operation of the Mutex being traced, and the store requests
// made under its context. Only a span that is not nil traces anything: the
// callers test for nil before they make attributes, which would allocate.
type span struct {
	span  trace.Span
	count *requestCount
	// caller is the context the operation was called with: an error
	// once it has ended says that the caller gave up, not that the
	// operation failed. Nil when there is no caller to give up.
	caller context.Context
}

// withRequestCount returns a context whose store requests are counted, as
// well as by the spans ctx's requests count for.
func withRequestCount(ctx context.Context) (context.Context, *requestCount) {
	parent, _ := ctx.Value(requestCountKey{}).(*requestCount)
	c := &requestCount{parent: parent}
	return context.WithValue(ctx, requestCountKey{}, c), c
}

// start starts a span called name under ctx and returns the context to
// make its store requests with; without tracing, ctx and nil.
func (t *telemetry) start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, *span) {
	if t.tracer == nil {
		return ctx, nil
	}
	caller := ctx
	ctx, c := withRequestCount(ctx)
	s := t.startCounted(ctx, c, name, opts...)
	s.caller = caller
	return trace.ContextWithSpan(ctx, s.span), s
}

// startCounted starts a span called name under ctx for requests that c
// counts, from before the span began; without tracing, nil.
func (t *telemetry) startCounted(ctx context.Context, c *requestCount, name string, opts ...trace.SpanStartOption) *span {
	if t.tracer == nil {
		return nil
	}
	_, s := t.tracer.Start(ctx, name, append(opts, trace.WithAttributes(t.attrs...))...)
	return &span{span: s, count: c, caller: ctx}
}

// end ends the span, with the number of its store requests, and err as
// its error unless err is nil or only says that the caller gave up.
func (s *span) end(err error) {
	s.span.SetAttributes(attrRequests.Int64(s.count.n.Load()))
	if err != nil && !s.gaveUp(err) {
		s.span.RecordError(err)
		s.span.SetStatus(codes.Error, err.Error())
	}
	s.span.End()
}

// gaveUp reports whether err says that the caller stopped waiting (the
// context it called with ended, or Close) rather than that something
// failed.
func (s *span) gaveUp(err error) bool {
	return gaveUp(s.caller, err)
}

// gaveUp reports whether err, returned to a call made with caller, says
// that the caller stopped waiting (caller ended, or Close) rather than that
// something failed. A nil caller never gives up, and a lost hold is a
// failure whatever ended caller (a hold's end stops its renewals' context).
func gaveUp(caller context.Context, err error) bool {
	return errors.Is(err, ErrClosed) || caller != nil && caller.Err() != nil && !errors.Is(err, ErrLockLost)
}

// lockTraced is lock, measured and traced as the operation called name
// (objsync.Lock, objsync.TryLock, objsync.Campaign).
func (m *Mutex) lockTraced(ctx context.Context, name string, ttl time.Duration, value string, wait, confirm bool) (*hold, error) {
	t := m.tel
	started := time.Now()
	caller := ctx
	ctx, s := t.start(ctx, name)
	h, err := m.lock(ctx, ttl, value, wait, confirm)
	outcome := outcomeAcquired
	switch {
	case h != nil:
		if t.meters {
			h.startMetering()
		}
	case err == nil || gaveUp(caller, err):
		outcome = outcomeNotAcquired
	default:
		outcome = outcomeError
	}
	if t.meters {
		t.acquireDuration.Record(ctx, time.Since(started).Seconds(), t.sets[attrOutcome.String(outcome)])
	}
	if s != nil {
		if h != nil {
			s.span.SetAttributes(attrFence.Int64(h.fence))
		}
		s.span.SetAttributes(attrOutcome.String(outcome))
		s.end(err)
	}
	return h, err
}

// startMetering counts the hold as in force, from now. If it has already
// ended (lost before Lock returned), its end is recorded at once; else
// end records it.
func (h *hold) startMetering() {
	// Under errMu, as end's meterEnd: the hold is counted in force before
	// its end can be, so objsync.lock.held never reads -1.
	h.errMu.Lock()
	defer h.errMu.Unlock()
	h.heldSince, h.metered = time.Now(), true
	h.m.tel.held.Add(context.Background(), 1, h.m.tel.base)
	if h.err != nil {
		h.meterEnd(h.err, h.lostReason, h.heldSince)
	}
}

// meterEnd records the end of a metered hold, held since then, which err
// ended (lost for the reason why, if it was lost). It runs under errMu.
func (h *hold) meterEnd(err error, why lostReason, since time.Time) {
	t := h.m.tel
	how := holdUnlocked
	switch {
	case errors.Is(err, ErrLockLost):
		how = holdLost
		t.lost.Add(context.Background(), 1, t.sets[attrLostReason.String(string(why))])
	case h.byClose:
		how = holdClosed
	}
	t.held.Add(context.Background(), -1, t.base)
	t.holdDuration.Record(context.Background(), time.Since(since).Seconds(), t.sets[attrHoldEnd.String(how)])
}

// leaderChange counts a new term: won by this candidate (self), or seen.
func (t *telemetry) leaderChange(self bool) {
	if !t.meters {
		return
	}
	who := "other"
	if self {
		who = "self"
	}
	t.leaderChanges.Add(context.Background(), 1, t.sets[attrLeader.String(who)])
}
