package objsync

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/objsync/objsync/driver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
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

// telemetry is a Mutex's metrics and spans: no-ops unless the caller gave
// WithMeterProvider or WithTracerProvider.
type telemetry struct {
	tracer trace.Tracer
	attrs  []attribute.KeyValue // on every metric and span of the Mutex

	acquireDuration metric.Float64Histogram
	holdDuration    metric.Float64Histogram
	held            metric.Int64UpDownCounter
	lost            metric.Int64Counter
	requests        metric.Int64Counter
	leaderChanges   metric.Int64Counter
}

// newTelemetry makes the instruments of a Mutex on loc. An instrument the
// provider refuses is reported by the provider's error handler and left a
// no-op: telemetry never stops a lock.
func newTelemetry(o *options, loc string) *telemetry {
	mp, tp := o.meterProvider, o.tracerProvider
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	kind := "plain"
	if o.queue {
		kind = "queue"
	}
	t := &telemetry{tracer: tp.Tracer(instrumentationName), attrs: []attribute.KeyValue{attrKind.String(kind)}}
	if o.nameAttribute {
		t.attrs = append(t.attrs, attrName.String(loc))
	}
	meter := mp.Meter(instrumentationName)
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
	return t
}

// with returns the Mutex's attributes and more, as a measurement option.
func (t *telemetry) with(more ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(append(make([]attribute.KeyValue, 0, len(t.attrs)+len(more)), t.attrs...), more...)...))
}

// requestCount is the number of store requests made under a span, carried
// by its context.
type requestCount struct{ n atomic.Int64 }

type requestCountKey struct{}

// request records a store request made with ctx: its operation and how the
// store answered.
func (t *telemetry) request(ctx context.Context, op string, err error) {
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
	t.requests.Add(ctx, 1, t.with(attrOperation.String(op), attrOutcome.String(outcome)))
	if c, ok := ctx.Value(requestCountKey{}).(*requestCount); ok {
		c.n.Add(1)
	}
}

// span is an operation of the Mutex being traced: a span, and the store
// requests made under its context.
type span struct {
	trace.Span
	count *requestCount
}

// withRequestCount returns a context whose store requests are counted.
func withRequestCount(ctx context.Context) (context.Context, *requestCount) {
	c := &requestCount{}
	return context.WithValue(ctx, requestCountKey{}, c), c
}

// start starts a span called name under ctx and returns the context to
// make its store requests with.
func (t *telemetry) start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, span) {
	ctx, c := withRequestCount(ctx)
	s := t.startCounted(ctx, c, name, opts...)
	return trace.ContextWithSpan(ctx, s.Span), *s
}

// startCounted starts a span called name under ctx for requests that c
// counts, from before the span began.
func (t *telemetry) startCounted(ctx context.Context, c *requestCount, name string, opts ...trace.SpanStartOption) *span {
	_, s := t.tracer.Start(ctx, name, append(opts, trace.WithAttributes(t.attrs...))...)
	return &span{s, c}
}

// end ends the span, with the number of its store requests, and err as
// its error unless err is nil or only says that the caller gave up.
func (s span) end(err error, attrs ...attribute.KeyValue) {
	s.SetAttributes(append(attrs, attrRequests.Int64(s.count.n.Load()))...)
	if err != nil && !gaveUp(err) {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// gaveUp reports whether err says that the caller stopped waiting (its
// context ended, or Close) rather than that something failed.
func gaveUp(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed)
}

// lockTraced is lock, measured and traced as the operation called name
// (objsync.Lock, objsync.TryLock, objsync.Campaign).
func (m *Mutex) lockTraced(ctx context.Context, name string, ttl time.Duration, value string, wait, confirm bool) (*hold, error) {
	t := m.tel
	started := time.Now()
	ctx, s := t.start(ctx, name)
	h, err := m.lock(ctx, ttl, value, wait, confirm)
	outcome := outcomeAcquired
	switch {
	case h != nil:
		s.SetAttributes(attrFence.Int64(h.fence))
		h.lockSpan = s.SpanContext()
		h.startMetering()
	case err == nil || gaveUp(err):
		outcome = outcomeNotAcquired
	default:
		outcome = outcomeError
	}
	t.acquireDuration.Record(ctx, time.Since(started).Seconds(), t.with(attrOutcome.String(outcome)))
	s.end(err, attrOutcome.String(outcome))
	return h, err
}

// startMetering counts the hold as in force, from now. If it has already
// ended (lost before Lock returned), its end is recorded at once; else
// end records it.
func (h *hold) startMetering() {
	h.errMu.Lock()
	since := time.Now()
	h.heldSince, h.metered = since, true
	ended, why := h.err, h.lostReason
	h.errMu.Unlock()
	h.m.tel.held.Add(context.Background(), 1, h.m.tel.with())
	if ended != nil {
		h.meterEnd(ended, why, since)
	}
}

// meterEnd records the end of a metered hold, held since then, which err
// ended (lost for the reason why, if it was lost).
func (h *hold) meterEnd(err error, why lostReason, since time.Time) {
	t := h.m.tel
	how := "unlocked"
	switch {
	case errors.Is(err, ErrLockLost):
		how = "lost"
		t.lost.Add(context.Background(), 1, t.with(attrLostReason.String(string(why))))
	case h.m.closing.Err() != nil:
		how = "closed"
	}
	t.held.Add(context.Background(), -1, t.with())
	t.holdDuration.Record(context.Background(), time.Since(since).Seconds(), t.with(attrHoldEnd.String(how)))
}

// leaderChange counts a new term: won by this candidate (self), or seen.
func (t *telemetry) leaderChange(self bool) {
	who := "other"
	if self {
		who = "self"
	}
	t.leaderChanges.Add(context.Background(), 1, t.with(attrLeader.String(who)))
}
