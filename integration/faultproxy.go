package integration

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Faults says how often a FaultProxy injects each fault. Each rate is the
// fraction of requests (0..1) that get it, drawn independently per request
// from the proxy's seeded random source, in the order listed: the first that
// fires wins. The zero Faults forwards everything unchanged.
//
// Every request takes the same number of draws whatever the rates, so that
// the same seed and the same sequence of requests give the same faults
// (requests that arrive during a blackhole take none).
type Faults struct {
	// Latency is an extra delay, uniform in [0, Latency], before anything
	// else happens to a request (forwarding or any fault below). A client
	// that gives up meanwhile leaves nothing behind: the request is
	// dropped, as a direct connection would drop it (except under
	// LateForward).
	Latency time.Duration
	// ServerError answers 500 InternalError, with an S3 XML error body,
	// without forwarding.
	ServerError float64
	// SlowDown answers 503 SlowDown, with an S3 XML error body, without
	// forwarding.
	SlowDown float64
	// ResetBefore resets the client's connection (TCP RST) without
	// forwarding: the client cannot tell whether its request was applied;
	// it was not.
	ResetBefore float64
	// ResetAfter forwards the request, waits until the server has answered
	// it completely (a write is applied), and then resets the client's
	// connection instead of answering: the ambiguous write, for real.
	ResetAfter float64
	// LateAnswer forwards the request at once (it lands even if the client
	// hangs up meanwhile) but holds the answer back for a random time in
	// [0, LateDelay], and sends it if the client is still there.
	LateAnswer float64
	// LateForward holds the request for a random time in [0, LateDelay]
	// and then forwards it whether or not the client has given up
	// meanwhile: the write lands after its caller gave up on it, as a
	// request stuck in a queue or a retransmission does. The answer goes
	// to the client if it is still there.
	LateForward float64
	// LateDelay bounds the holds of LateAnswer and LateForward.
	LateDelay time.Duration
	// Detach forwards every request to its end even if its client hangs
	// up, as a proxy that buffers whole requests does. It is no fault: a
	// distributed MinIO needs it (see TestChaosDistributed).
	Detach bool
}

// injects reports whether f injects any fault.
func (f Faults) injects() bool {
	f.Detach = false
	return f != Faults{}
}

// FaultCounts says how many requests a FaultProxy has seen and for how many
// of them it chose each fault. A request counts under a fault when the fault
// is drawn for it, even if its client gives up before the fault could
// happen.
type FaultCounts struct {
	Requests    int64 // every request the proxy accepted
	Latency     int64 // requests delayed by a Latency draw above zero
	ServerError int64
	SlowDown    int64
	ResetBefore int64
	ResetAfter  int64
	LateAnswer  int64
	LateForward int64
	// Blackholed counts requests a blackhole swallowed (see
	// FaultProxy.Blackhole): those that arrived during one, and those a
	// blackhole caught while they waited to be forwarded (which also count
	// under the fault, if any, that made them wait).
	Blackholed int64
}

// Faults returns the number of faults injected: every counter but Requests
// and Latency (a delay alone is no fault). A request that a blackhole caught
// while LateForward held it counts twice.
func (c FaultCounts) Faults() int64 {
	return c.ServerError + c.SlowDown + c.ResetBefore + c.ResetAfter +
		c.LateAnswer + c.LateForward + c.Blackholed
}

// FaultProxy is an HTTP proxy, listening on 127.0.0.1, that sits between S3
// clients and an S3 server and injects the faults that chaos tests need:
// errors, resets before and after the server applied a request, late
// answers, late writes, and blackholes.
//
// It forwards requests as they came, with the client's own Host header,
// because SigV4 signatures cover it: the server checks the signature made
// for the proxy's address. It holds whole request and response bodies in
// memory, which suits the small objects of lock tests, not big uploads.
//
// Resets are real TCP resets (SO_LINGER 0 on the client's connection), so
// clients see "connection reset by peer" as when a server or a middlebox
// dies, not a clean close.
type FaultProxy struct {
	upstream  *url.URL
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	served    chan struct{} // closed when srv.Serve has returned
	t         testing.TB

	// ctx is cancelled when the proxy closes. Request contexts derive from
	// it, and the forwards that must outlive their client (LateForward,
	// LateAnswer, ResetAfter) use it, so that closing releases every held
	// request.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // handlers running

	mu        sync.Mutex
	closed    bool
	rng       *rand.Rand
	faults    Faults
	counts    FaultCounts
	bh        *blackholePeriod // the current blackhole, nil if none
	bhStarted chan struct{}    // closed (and replaced) when a blackhole begins
	// failedForwards counts forwards that failed since the last that
	// worked (see noteForward).
	failedForwards int
}

// blackholePeriod is one period during which the proxy swallows requests.
type blackholePeriod struct {
	timer *time.Timer   // ends it
	end   chan struct{} // closed when it ends
}

// StartFaultProxy starts a proxy on 127.0.0.1:0 that forwards to upstream
// (such as "http://127.0.0.1:9000") without faults until SetFaults or
// Blackhole says otherwise. seed makes the fault draws reproducible. The
// proxy is closed when the test ends; closing resets every request it still
// holds, so that no goroutine outlives the test.
func StartFaultProxy(t testing.TB, upstream string, seed uint64) *FaultProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.Fatalf("integration: fault proxy upstream %q: want http://HOST:PORT (parse error: %v)", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("integration: fault proxy: listen on 127.0.0.1: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &FaultProxy{
		upstream: u,
		ln:       ln,
		// Our own transport: never an environment proxy (the upstream is
		// on loopback), no transparent gzip (the client gets the server's
		// bytes and headers as they were), and connections that are not
		// shared with anything else in the test.
		transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		served:    make(chan struct{}),
		t:         t,
		ctx:       ctx,
		cancel:    cancel,
		rng:       newFaultRand(seed),
		bhStarted: make(chan struct{}),
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serve),
		ReadHeaderTimeout: time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln) // ErrServerClosed once closed
	}()
	t.Cleanup(p.close)
	return p
}

// URL returns the proxy's address, "http://127.0.0.1:PORT": the endpoint to
// give clients instead of the server's.
func (p *FaultProxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetFaults sets the faults for requests that arrive from now on; requests
// already in the proxy keep the faults they drew. It panics on a rate
// outside [0, 1] or a negative duration. Safe for concurrent use.
func (p *FaultProxy) SetFaults(f Faults) {
	if err := f.check(); err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
}

func (f Faults) check() error {
	for _, r := range []struct {
		name string
		rate float64
	}{
		{"ServerError", f.ServerError}, {"SlowDown", f.SlowDown},
		{"ResetBefore", f.ResetBefore}, {"ResetAfter", f.ResetAfter},
		{"LateAnswer", f.LateAnswer}, {"LateForward", f.LateForward},
	} {
		if !(r.rate >= 0 && r.rate <= 1) { // also catches NaN
			return fmt.Errorf("integration: Faults.%s is %v; rates are fractions in [0, 1]", r.name, r.rate)
		}
	}
	if f.Latency < 0 || f.LateDelay < 0 {
		return fmt.Errorf("integration: Faults.Latency (%v) and Faults.LateDelay (%v) cannot be negative", f.Latency, f.LateDelay)
	}
	return nil
}

// Blackhole makes the proxy a black hole for d from now: every request,
// new or already waiting to be forwarded (under Latency or LateForward), is
// accepted and neither forwarded nor answered, as when the network silently
// drops packets. When d ends, their connections are reset; requests that
// arrive afterwards pass normally. Requests already forwarded are not
// affected. Calling it during a blackhole moves the end to d from now
// (d <= 0 ends it now). Safe for concurrent use.
func (p *FaultProxy) Blackhole(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.bh != nil && p.bh.timer.Stop() {
		if d > 0 {
			p.bh.timer.Reset(d)
		} else {
			close(p.bh.end)
			p.bh = nil
		}
		return
	}
	// No blackhole, or one whose timer has just fired: endBlackhole is
	// about to end that one, and a new one begins.
	if d <= 0 {
		return
	}
	bh := &blackholePeriod{end: make(chan struct{})}
	bh.timer = time.AfterFunc(d, func() { p.endBlackhole(bh) })
	p.bh = bh
	close(p.bhStarted)
	p.bhStarted = make(chan struct{})
}

func (p *FaultProxy) endBlackhole(bh *blackholePeriod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bh == bh {
		p.bh = nil
	}
	close(bh.end)
}

// Counts returns how many requests the proxy has seen and how many faults
// it injected, so far. Safe for concurrent use.
func (p *FaultProxy) Counts() FaultCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

// close stops the proxy and waits until every request it held is gone: held
// and blackholed requests are reset, forwards in flight are cancelled.
func (p *FaultProxy) close() {
	p.mu.Lock()
	p.closed = true
	if p.bh != nil {
		p.bh.timer.Stop()
	}
	p.mu.Unlock()
	p.cancel()
	// Handlers reset their clients' connections as they see the proxy
	// close. Give them a moment before the server closes every connection
	// it has, which would close some cleanly under them; a handler stuck
	// reading or writing a client that does not move (a stopped process)
	// needs that close.
	handlersDone := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(handlersDone)
	}()
	select {
	case <-handlersDone:
	case <-time.After(time.Second):
	}
	_ = p.srv.Close() // the listener and every connection not hijacked
	<-handlersDone
	<-p.served
	p.transport.CloseIdleConnections()
}

// enter registers a handler, unless the proxy is closing.
func (p *FaultProxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

type faultKind int

const (
	noFault faultKind = iota
	faultServerError
	faultSlowDown
	faultResetBefore
	faultResetAfter
	faultLateAnswer
	faultLateForward
)

// faultDraw is what the proxy drew for one request.
type faultDraw struct {
	id      uint64 // the request's number, for S3 request ids
	latency time.Duration
	fault   faultKind
	late    time.Duration // the hold of LateAnswer and LateForward
	detach  bool          // Faults.Detach
}

// decide counts a new request and draws its faults, unless a blackhole is
// on: then it returns that blackhole instead.
func (p *FaultProxy) decide() (faultDraw, *blackholePeriod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Requests++
	id := uint64(p.counts.Requests)
	if p.bh != nil {
		return faultDraw{id: id}, p.bh
	}
	d := drawFaults(p.rng, p.faults)
	d.id, d.detach = id, p.faults.Detach
	if d.latency > 0 {
		p.counts.Latency++
	}
	switch d.fault {
	case faultServerError:
		p.counts.ServerError++
	case faultSlowDown:
		p.counts.SlowDown++
	case faultResetBefore:
		p.counts.ResetBefore++
	case faultResetAfter:
		p.counts.ResetAfter++
	case faultLateAnswer:
		p.counts.LateAnswer++
	case faultLateForward:
		p.counts.LateForward++
	}
	return d, nil
}

// newFaultRand returns the random source of a proxy started with seed.
func newFaultRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// drawFaults draws one request's faults. Every request takes the same
// number of draws, whatever the rates and whichever fault fires, so that the
// n-th request's faults depend only on the seed and the Faults in force.
func drawFaults(rng *rand.Rand, f Faults) faultDraw {
	d := faultDraw{
		latency: randDuration(rng, f.Latency),
		late:    randDuration(rng, f.LateDelay),
	}
	for _, c := range []struct {
		rate float64
		kind faultKind
	}{
		{f.ServerError, faultServerError},
		{f.SlowDown, faultSlowDown},
		{f.ResetBefore, faultResetBefore},
		{f.ResetAfter, faultResetAfter},
		{f.LateAnswer, faultLateAnswer},
		{f.LateForward, faultLateForward},
	} {
		// Float64 is in [0, 1): a rate of 1 always fires, 0 never.
		if rng.Float64() < c.rate && d.fault == noFault {
			d.fault = c.kind
		}
	}
	return d
}

// randDuration returns a duration uniform in [0, maxD]. It takes one draw
// even when maxD is 0.
func randDuration(rng *rand.Rand, maxD time.Duration) time.Duration {
	if maxD <= 0 {
		rng.Uint64()
		return 0
	}
	if maxD == time.Duration(1<<63-1) {
		return time.Duration(rng.Int64())
	}
	return time.Duration(rng.Int64N(int64(maxD) + 1))
}

// serve is the proxy's handler.
func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		resetConn(w)
		return
	}
	defer p.wg.Done()

	d, bh := p.decide()
	if bh != nil {
		p.swallow(w, r, bh)
		return
	}
	// The whole body first: LateForward must be able to send it after the
	// client has gone, and a fault answer leaves the connection clean.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		resetConn(w) // the client went away or sent a broken body
		return
	}
	// Under LateForward the request goes to the server even if the client
	// gives up, also while Latency delays it.
	gone := r.Context().Done()
	if d.fault == faultLateForward || d.detach {
		gone = nil
	}
	if end, bh := p.hold(d.latency, gone, true); end != holdDone {
		p.endHold(w, r, end, bh)
		return
	}

	switch d.fault {
	case faultServerError:
		writeS3Error(w, r, d.id, http.StatusInternalServerError, "InternalError",
			"We encountered an internal error. Please try again.")
	case faultSlowDown:
		writeS3Error(w, r, d.id, http.StatusServiceUnavailable, "SlowDown",
			"Please reduce your request rate.")
	case faultResetBefore:
		resetConn(w)
	case faultResetAfter:
		// Not tied to the client: the server must have applied the
		// request, whatever the client does, before the reset.
		_, _ = p.forward(p.ctx, r, body)
		resetConn(w)
	case faultLateAnswer:
		a, err := p.forward(p.ctx, r, body)
		if err != nil {
			resetConn(w)
			return
		}
		// The request is with the server already: a blackhole that
		// begins now does not take the answer back.
		if end, _ := p.hold(d.late, r.Context().Done(), false); end != holdDone {
			resetConn(w)
			return
		}
		a.write(w)
	case faultLateForward:
		if end, bh := p.hold(d.late, nil, true); end != holdDone {
			p.endHold(w, r, end, bh)
			return
		}
		a, err := p.forward(p.ctx, r, body)
		if err != nil || r.Context().Err() != nil {
			resetConn(w) // nobody to answer
			return
		}
		a.write(w)
	default:
		// As a direct connection would: a client that hangs up cancels
		// its request, unless the proxy detaches it.
		ctx := r.Context()
		if d.detach {
			ctx = p.ctx
		}
		a, err := p.forward(ctx, r, body)
		if err != nil {
			resetConn(w)
			return
		}
		a.write(w)
	}
}

// holdEnd is why a hold ended.
type holdEnd int

const (
	holdDone       holdEnd = iota // its time passed
	holdGone                      // the client went away
	holdClosing                   // the proxy is closing
	holdBlackholed                // a blackhole caught the request
)

// hold waits for d, unless the client goes away (gone; nil if that must not
// end the hold), the proxy closes, or, if swallowable, a blackhole is on or
// begins meanwhile, which it returns then. A swallowable hold looks for a
// blackhole even when d is 0, so that none lets a request through.
func (p *FaultProxy) hold(d time.Duration, gone <-chan struct{}, swallowable bool) (holdEnd, *blackholePeriod) {
	var started <-chan struct{}
	if swallowable {
		p.mu.Lock()
		bh := p.bh
		started = p.bhStarted
		p.mu.Unlock()
		if bh != nil {
			return holdBlackholed, bh
		}
	}
	if d <= 0 {
		return holdDone, nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return holdDone, nil
	case <-gone:
		return holdGone, nil
	case <-p.ctx.Done():
		return holdClosing, nil
	case <-started:
		p.mu.Lock()
		bh := p.bh // nil if it has ended already: then it is reset at once
		p.mu.Unlock()
		return holdBlackholed, bh
	}
}

// endHold finishes a request whose hold ended early: swallowed by a
// blackhole, or reset.
func (p *FaultProxy) endHold(w http.ResponseWriter, r *http.Request, end holdEnd, bh *blackholePeriod) {
	if end == holdBlackholed {
		p.swallow(w, r, bh)
		return
	}
	resetConn(w)
}

// swallow keeps a request that a blackhole caught, neither forwarding nor
// answering it, until the blackhole ends (or the client gives up, or the
// proxy closes), and then resets its connection. bh may be nil: a blackhole
// that has ended already.
func (p *FaultProxy) swallow(w http.ResponseWriter, r *http.Request, bh *blackholePeriod) {
	p.mu.Lock()
	p.counts.Blackholed++
	p.mu.Unlock()
	if bh != nil {
		select {
		case <-bh.end:
		case <-r.Context().Done(): // also when the proxy closes
		}
	}
	resetConn(w)
}

// upstreamAnswer is a server's whole response.
type upstreamAnswer struct {
	status int
	header http.Header
	body   []byte
}

// forward sends the request to the upstream server as the client sent it:
// same method, path (with its escaping), query, Host header (SigV4 signs
// it), headers (less hop-by-hop ones) and body. It returns the server's
// whole answer, whatever its status. On failure the client only sees a
// reset, so the failure goes to the test's log.
func (p *FaultProxy) forward(ctx context.Context, in *http.Request, body []byte) (*upstreamAnswer, error) {
	a, err := p.roundTrip(ctx, in, body)
	if err != nil && ctx.Err() != nil {
		return nil, err // the client hung up, or the proxy is closing: no news
	}
	p.noteForward(in, err)
	return a, err
}

func (p *FaultProxy) roundTrip(ctx context.Context, in *http.Request, body []byte) (*upstreamAnswer, error) {
	u := *p.upstream
	u.Path = in.URL.Path
	u.RawPath = in.URL.RawPath
	u.RawQuery = in.URL.RawQuery
	u.Fragment, u.RawFragment = "", ""
	out, err := http.NewRequestWithContext(ctx, in.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out.Host = in.Host
	out.Header = in.Header.Clone()
	removeHopByHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		// Keep net/http from adding its own.
		out.Header["User-Agent"] = nil
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	return readAnswer(resp)
}

// noteForward logs the first of a run of failed forwards and the success
// that ends it, not every failure: while a test has the server stopped,
// every request fails, and the log would drown.
func (p *FaultProxy) noteForward(in *http.Request, err error) {
	p.mu.Lock()
	failed := p.failedForwards
	if err != nil {
		p.failedForwards++
	} else {
		p.failedForwards = 0
	}
	p.mu.Unlock()
	switch {
	case err != nil && failed == 0:
		p.t.Logf("integration: fault proxy: forward %s %s to %s: %v (its client gets a reset; "+
			"further failures are not logged until a forward succeeds)", in.Method, in.URL.RequestURI(), p.upstream.Host, err)
	case err == nil && failed > 0:
		p.t.Logf("integration: fault proxy: forwarding to %s again, after %d failed forwards", p.upstream.Host, failed)
	}
}

func readAnswer(resp *http.Response) (*upstreamAnswer, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer (status %d): %w", resp.StatusCode, err)
	}
	h := resp.Header.Clone()
	removeHopByHop(h)
	return &upstreamAnswer{status: resp.StatusCode, header: h, body: body}, nil
}

// write sends the answer to the client. Content-Length comes from the
// server's headers, so that HEAD answers keep the object's size.
func (a *upstreamAnswer) write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range a.header {
		h[k] = v
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body) // nothing to do for a client that went away
}

// hopByHopHeaders are the hop-by-hop headers (RFC 9110, section 7.6.1),
// which concern one connection and are not forwarded.
var hopByHopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHopHeaders {
		h.Del(name)
	}
}

// s3Error is the body of an S3 error answer.
type s3Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string
	Message   string
	Resource  string
	RequestID string `xml:"RequestId"`
}

// writeS3Error answers as an S3 server does when it fails a request, so
// that clients see the error code (InternalError, SlowDown) they would get
// from S3 itself.
func writeS3Error(w http.ResponseWriter, r *http.Request, n uint64, status int, code, msg string) {
	id := fmt.Sprintf("FAULTPROXY%08X", n)
	var b bytes.Buffer
	b.WriteString(xml.Header)
	if err := xml.NewEncoder(&b).Encode(s3Error{Code: code, Message: msg, Resource: r.URL.Path, RequestID: id}); err != nil {
		panic(err) // cannot fail for these strings
	}
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	h.Set("X-Amz-Request-Id", id)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
}

// resetConn hijacks the client's connection and closes it with a TCP RST
// (SO_LINGER 0): the client gets "connection reset by peer" and no answer.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Cannot happen on HTTP/1 connections; the server then closes the
		// connection without answering.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
