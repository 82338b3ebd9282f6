package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// These tests run the proxy against a small upstream on loopback, no
// Docker. Timing checks are lower bounds the proxy guarantees, or generous
// upper bounds.

// upstreamRequest is one request as the upstream got it.
type upstreamRequest struct {
	method, uri, host, body string
	header                  http.Header
	at                      time.Time
}

// upstreamRecorder is an upstream that records every request (a PUT is
// "applied" when recorded) and answers 200 with an ETag, or as the test's
// handler does.
type upstreamRecorder struct {
	srv *httptest.Server
	hit chan upstreamRequest // every request too, for waitHit

	mu   sync.Mutex
	reqs []upstreamRequest
}

func startUpstreamRecorder(t *testing.T, h http.HandlerFunc) *upstreamRecorder {
	t.Helper()
	rec := &upstreamRecorder{hit: make(chan upstreamRequest, 1000)}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: read the body of %s %s: %v", r.Method, r.RequestURI, err)
			return
		}
		s := upstreamRequest{method: r.Method, uri: r.RequestURI, host: r.Host, body: string(body), header: r.Header.Clone(), at: time.Now()}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, s)
		rec.mu.Unlock()
		rec.hit <- s
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("ETag", `"etag-1"`)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rec.srv.Close)
	if !strings.HasPrefix(rec.srv.URL, "http://127.0.0.1:") {
		t.Fatalf("upstream listens on %s, not 127.0.0.1", rec.srv.URL)
	}
	return rec
}

func (rec *upstreamRecorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// waitHit waits for the next request the upstream gets.
func (rec *upstreamRecorder) waitHit(t *testing.T, within time.Duration) upstreamRequest {
	t.Helper()
	select {
	case s := <-rec.hit:
		return s
	case <-time.After(within):
		t.Fatalf("upstream got no request within %v", within)
		return upstreamRequest{}
	}
}

// loopbackClient is a plain client straight to loopback: no environment
// proxy, and a new connection for every request, because net/http silently
// retries some requests that fail on a reused connection, which would hide
// a reset from the test.
func loopbackClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
}

// proxyDo sends a request and reads the whole answer. Safe in any goroutine.
func proxyDo(c *http.Client, method, url, body string) (*http.Response, string, error) {
	return proxyDoCtx(context.Background(), c, method, url, body)
}

func proxyDoCtx(ctx context.Context, c *http.Client, method, url, body string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// wantConnError fails unless err is a connection reset (TCP RST), not an
// answer, a clean close or a timeout.
func wantConnError(t *testing.T, what string, resp *http.Response, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got %s, want a connection reset", what, resp.Status)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: got %v, want a connection reset", what, err)
	}
}

// seedFor returns a seed whose first request draws what ok wants, so that a
// test can rely on a hold being long enough.
func seedFor(t *testing.T, f Faults, ok func(faultDraw) bool) uint64 {
	t.Helper()
	for seed := uint64(1); seed < 1000; seed++ {
		if ok(drawFaults(newFaultRand(seed), f)) {
			return seed
		}
	}
	t.Fatal("no seed below 1000 draws what the test needs")
	return 0
}

// waitCounts polls the proxy's counts until ok holds.
func waitCounts(t *testing.T, p *FaultProxy, ok func(FaultCounts) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(p.Counts()) {
		if time.Now().After(deadline) {
			t.Fatalf("counts never got there: %+v", p.Counts())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFaultProxyPassThrough(t *testing.T) {
	rec := startUpstreamRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodHead:
			w.Header().Set("Content-Length", "1234")
			w.Header().Set("ETag", `"head"`)
		case http.MethodGet:
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, "object contents")
		default:
			w.Header().Set("ETag", `"put"`)
			w.WriteHeader(http.StatusCreated)
		}
	})
	p := StartFaultProxy(t, rec.srv.URL, 1)
	if !strings.HasPrefix(p.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL() = %s, want http://127.0.0.1:PORT", p.URL())
	}
	proxyHost := strings.TrimPrefix(p.URL(), "http://")
	c := &http.Client{Transport: &http.Transport{Proxy: nil}} // keep-alive this time
	defer c.CloseIdleConnections()

	// A path with escapes that must survive as they were (SigV4 signs the
	// escaped path), a query, signed-looking headers, and a hop-by-hop
	// header named in Connection.
	const uri = "/bucket/dir%2Fa%20b+c~d?x-id=PutObject&uploads=&z=%2F"
	req, err := http.NewRequest(http.MethodPut, p.URL()+uri, strings.NewReader("the body"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host;x-amz-date, Signature=y")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT through the proxy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("ETag") != `"put"` {
		t.Errorf("PUT answer: %s, ETag %s; want 201 Created, \"put\"", resp.Status, resp.Header.Get("ETag"))
	}
	s := rec.waitHit(t, 5*time.Second)
	if s.method != http.MethodPut || s.uri != uri || s.host != proxyHost || s.body != "the body" {
		t.Errorf("upstream got %s %s Host %s body %q; want PUT %s Host %s body %q",
			s.method, s.uri, s.host, s.body, uri, proxyHost, "the body")
	}
	if s.header.Get("X-Amz-Date") != "20260101T000000Z" || s.header.Get("Authorization") != req.Header.Get("Authorization") {
		t.Errorf("upstream got headers %v; want X-Amz-Date and Authorization as sent", s.header)
	}
	if s.header.Get("X-Hop") != "" {
		t.Errorf("upstream got the hop-by-hop header X-Hop")
	}

	resp, body, err := proxyDo(c, http.MethodGet, p.URL()+"/bucket/key", "")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	if resp.StatusCode != http.StatusPartialContent || body != "object contents" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("GET answer: %s %q (Content-Type %s); want 206 %q text/plain", resp.Status, body, resp.Header.Get("Content-Type"), "object contents")
	}
	resp, _, err = proxyDo(c, http.MethodHead, p.URL()+"/bucket/key", "")
	if err != nil {
		t.Fatalf("HEAD through the proxy: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 1234 || resp.Header.Get("ETag") != `"head"` {
		t.Errorf("HEAD answer: %s, Content-Length %d, ETag %s; want 200, 1234, \"head\"", resp.Status, resp.ContentLength, resp.Header.Get("ETag"))
	}

	if got, want := p.Counts(), (FaultCounts{Requests: 3}); got != want {
		t.Errorf("Counts() = %+v, want %+v", got, want)
	}
}

// TestFaultProxyS3Client sends requests of the AWS SDK through the proxy:
// the server sees them signed for the proxy's Host, and the SDK reads the
// proxy's error answers as S3 errors.
func TestFaultProxyS3Client(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	p := StartFaultProxy(t, rec.srv.URL, 1)
	cli := s3.New(s3.Options{
		Region:                     Region,
		BaseEndpoint:               aws.String(p.URL()),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider("key", "secret", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           1,
		HTTPClient:                 loopbackClient(5 * time.Second),
	})
	ctx := context.Background()
	put := func() error {
		_, err := cli.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("bucket"), Key: aws.String("lock"), Body: bytes.NewReader([]byte("lease")),
		})
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("PutObject through the proxy: %v", err)
	}
	s := rec.waitHit(t, 5*time.Second)
	if s.host != strings.TrimPrefix(p.URL(), "http://") || !strings.Contains(s.header.Get("Authorization"), "host") || s.body != "lease" {
		t.Errorf("upstream got Host %s, Authorization %q, body %q; want the proxy's Host, signed, %q",
			s.host, s.header.Get("Authorization"), s.body, "lease")
	}

	for _, tc := range []struct {
		f    Faults
		code string
	}{
		{Faults{ServerError: 1}, "InternalError"},
		{Faults{SlowDown: 1}, "SlowDown"},
	} {
		p.SetFaults(tc.f)
		var apiErr smithy.APIError
		if err := put(); !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.code {
			t.Errorf("PutObject with %+v: got %v, want the S3 error %s", tc.f, err, tc.code)
		}
	}
	if n := rec.count(); n != 1 {
		t.Errorf("upstream got %d requests, want 1 (error answers are not forwarded)", n)
	}
}

func TestFaultProxyErrorAnswers(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	p := StartFaultProxy(t, rec.srv.URL, 1)
	c := loopbackClient(5 * time.Second)
	for _, tc := range []struct {
		f      Faults
		status int
		code   string
	}{
		{Faults{ServerError: 1}, http.StatusInternalServerError, "<Code>InternalError</Code>"},
		{Faults{SlowDown: 1}, http.StatusServiceUnavailable, "<Code>SlowDown</Code>"},
	} {
		p.SetFaults(tc.f)
		resp, body, err := proxyDo(c, http.MethodPut, p.URL()+"/bucket/key", "data")
		if err != nil {
			t.Fatalf("PUT with %+v: %v", tc.f, err)
		}
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.code) || !strings.Contains(body, "<Resource>/bucket/key</Resource>") ||
			resp.Header.Get("Content-Type") != "application/xml" {
			t.Errorf("PUT with %+v: %s %s %q; want %d, application/xml, %s", tc.f, resp.Status, resp.Header.Get("Content-Type"), body, tc.status, tc.code)
		}
	}
	if n := rec.count(); n != 0 {
		t.Errorf("upstream got %d requests, want none", n)
	}
	if got, want := p.Counts(), (FaultCounts{Requests: 2, ServerError: 1, SlowDown: 1}); got != want {
		t.Errorf("Counts() = %+v, want %+v", got, want)
	}
}

func TestFaultProxyResetBefore(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	p := StartFaultProxy(t, rec.srv.URL, 1)
	p.SetFaults(Faults{ResetBefore: 1})
	resp, _, err := proxyDo(loopbackClient(5*time.Second), http.MethodPut, p.URL()+"/bucket/key", "data")
	wantConnError(t, "PUT with ResetBefore", resp, err)
	if n := rec.count(); n != 0 {
		t.Errorf("upstream got %d requests, want none", n)
	}
	if got := p.Counts(); got.ResetBefore != 1 || got.Faults() != 1 {
		t.Errorf("Counts() = %+v, want one ResetBefore", got)
	}
}

func TestFaultProxyResetAfter(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	p := StartFaultProxy(t, rec.srv.URL, 1)
	p.SetFaults(Faults{ResetAfter: 1})
	resp, _, err := proxyDo(loopbackClient(5*time.Second), http.MethodPut, p.URL()+"/bucket/key", "data")
	wantConnError(t, "PUT with ResetAfter", resp, err)
	// Applied before the reset: no waiting.
	if n := rec.count(); n != 1 {
		t.Fatalf("upstream had %d requests when the client saw the reset, want 1", n)
	}
	if s := rec.waitHit(t, time.Second); s.method != http.MethodPut || s.body != "data" {
		t.Errorf("upstream got %s %q, want PUT %q", s.method, s.body, "data")
	}
	if got := p.Counts(); got.ResetAfter != 1 || got.Faults() != 1 {
		t.Errorf("Counts() = %+v, want one ResetAfter", got)
	}
}

func TestFaultProxyLateAnswer(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	f := Faults{LateAnswer: 1, LateDelay: 300 * time.Millisecond}
	var hold time.Duration
	seed := seedFor(t, f, func(d faultDraw) bool { hold = d.late; return d.late >= 100*time.Millisecond })
	p := StartFaultProxy(t, rec.srv.URL, seed)
	p.SetFaults(f)
	resp, _, err := proxyDo(loopbackClient(5*time.Second), http.MethodPut, p.URL()+"/bucket/key", "data")
	answered := time.Now()
	if err != nil {
		t.Fatalf("PUT with LateAnswer: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != `"etag-1"` {
		t.Errorf("PUT with LateAnswer: %s, ETag %s; want the upstream's 200", resp.Status, resp.Header.Get("ETag"))
	}
	// Forwarded first, then the answer held back: it came at least the
	// hold after the upstream had the request.
	if s := rec.waitHit(t, time.Second); answered.Sub(s.at) < hold {
		t.Errorf("the answer came %v after the upstream got the request; want at least the hold, %v", answered.Sub(s.at), hold)
	}
	if got := p.Counts(); got.LateAnswer != 1 || got.Faults() != 1 {
		t.Errorf("Counts() = %+v, want one LateAnswer", got)
	}
}

func TestFaultProxyLateForward(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	f := Faults{LateForward: 1, LateDelay: time.Second}
	var hold time.Duration
	seed := seedFor(t, f, func(d faultDraw) bool { hold = d.late; return d.late >= 600*time.Millisecond })
	p := StartFaultProxy(t, rec.srv.URL, seed)
	p.SetFaults(f)

	// The client gives up as soon as the proxy holds its request.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, _, err := proxyDoCtx(ctx, loopbackClient(5*time.Second), http.MethodPut, p.URL()+"/bucket/key", "late write")
		errc <- err
	}()
	waitCounts(t, p, func(c FaultCounts) bool { return c.LateForward == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("PUT with LateForward, given up: got %v, want context.Canceled", err)
	}
	gaveUp := time.Now()
	if n := rec.count(); n != 0 {
		t.Fatalf("upstream got the request before the client gave up (hold %v)", hold)
	}
	s := rec.waitHit(t, 5*time.Second)
	if s.method != http.MethodPut || s.body != "late write" || s.at.Before(gaveUp) {
		t.Errorf("upstream got %s %q at %v; want PUT %q after the client gave up at %v", s.method, s.body, s.at, "late write", gaveUp)
	}

	// With a client that waits, the answer comes back.
	p.SetFaults(Faults{LateForward: 1, LateDelay: 50 * time.Millisecond})
	resp, _, err := proxyDo(loopbackClient(5*time.Second), http.MethodPut, p.URL()+"/bucket/key", "waited")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT with LateForward, waiting: %v %v; want 200", resp, err)
	}
	if got := p.Counts(); got.LateForward != 2 || got.Faults() != 2 {
		t.Errorf("Counts() = %+v, want two LateForward", got)
	}
}

func TestFaultProxyBlackhole(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	p := StartFaultProxy(t, rec.srv.URL, 1)
	c := loopbackClient(5 * time.Second)

	p.Blackhole(200 * time.Millisecond)
	resp, _, err := proxyDo(c, http.MethodPut, p.URL()+"/bucket/key", "swallowed")
	wantConnError(t, "PUT during a blackhole", resp, err)
	if n := rec.count(); n != 0 {
		t.Fatalf("upstream got %d requests during the blackhole, want none", n)
	}

	// After it, requests pass.
	resp, _, err = proxyDo(c, http.MethodPut, p.URL()+"/bucket/key", "after")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT after the blackhole: %v %v; want 200", resp, err)
	}
	if s := rec.waitHit(t, time.Second); s.body != "after" {
		t.Errorf("upstream got %q, want %q", s.body, "after")
	}

	// A request already held (LateForward) when a blackhole begins is
	// swallowed too, and never forwarded.
	f := Faults{LateForward: 1, LateDelay: time.Hour}
	p.SetFaults(f)
	errc := make(chan error, 1)
	go func() {
		resp, _, err := proxyDo(c, http.MethodPut, p.URL()+"/bucket/key", "held")
		if err == nil {
			err = errors.New(resp.Status)
		}
		errc <- err
	}()
	waitCounts(t, p, func(c FaultCounts) bool { return c.LateForward == 1 })
	p.Blackhole(50 * time.Millisecond)
	select {
	case err := <-errc:
		wantConnError(t, "PUT held when a blackhole began", nil, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a request held when a blackhole began was not reset when it ended")
	}
	if n := rec.count(); n != 1 {
		t.Errorf("upstream got %d requests, want 1 (only the one after the first blackhole)", n)
	}
	if got, want := p.Counts(), (FaultCounts{Requests: 3, LateForward: 1, Blackholed: 2}); got != want || got.Faults() != 3 {
		t.Errorf("Counts() = %+v (Faults %d), want %+v (Faults 3)", got, got.Faults(), want)
	}

	// Blackhole(0) ends a blackhole at once.
	p.SetFaults(Faults{})
	p.Blackhole(time.Hour)
	p.Blackhole(0)
	resp, _, err = proxyDo(c, http.MethodPut, p.URL()+"/bucket/key", "ended")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT after Blackhole(0): %v %v; want 200", resp, err)
	}
}

// TestFaultProxyCounts sends many requests with several faults, checks that
// the counts match what the client saw, and that the same seed gives the
// same faults again.
func TestFaultProxyCounts(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	f := Faults{Latency: time.Millisecond, ServerError: 0.2, SlowDown: 0.2, ResetBefore: 0.2}
	run := func() (FaultCounts, []int) {
		p := StartFaultProxy(t, rec.srv.URL, 42)
		p.SetFaults(f)
		c := loopbackClient(5 * time.Second)
		var outcomes []int // status, or 0 for a connection error
		for range 40 {
			resp, _, err := proxyDo(c, http.MethodGet, p.URL()+"/bucket/key", "")
			if err != nil {
				wantConnError(t, "GET", resp, err)
				outcomes = append(outcomes, 0)
				continue
			}
			outcomes = append(outcomes, resp.StatusCode)
		}
		return p.Counts(), outcomes
	}
	before := rec.count()
	counts, outcomes := run()
	byStatus := map[int]int64{}
	for _, o := range outcomes {
		byStatus[o]++
	}
	if counts.Requests != 40 || counts.ServerError != byStatus[500] || counts.SlowDown != byStatus[503] ||
		counts.ResetBefore != byStatus[0] || counts.Faults() != 40-byStatus[200] {
		t.Errorf("Counts() = %+v, but the client saw (status: number, 0 for resets) %v", counts, byStatus)
	}
	if counts.ServerError == 0 || counts.SlowDown == 0 || counts.ResetBefore == 0 || counts.Latency == 0 || byStatus[200] == 0 {
		t.Errorf("Counts() = %+v: with these rates every fault and some successes should show in 40 requests", counts)
	}
	if n := int64(rec.count() - before); n != byStatus[200] {
		t.Errorf("upstream got %d requests, want %d (the successes)", n, byStatus[200])
	}

	again, outcomesAgain := run()
	if again != counts || !slices.Equal(outcomes, outcomesAgain) {
		t.Errorf("the same seed gave other faults:\n%+v %v\n%+v %v", counts, outcomes, again, outcomesAgain)
	}
}

// TestFaultProxyCleanup checks that the proxy's cleanup releases requests
// it holds (LateForward, a blackhole) at once, without forwarding them.
func TestFaultProxyCleanup(t *testing.T) {
	rec := startUpstreamRecorder(t, nil)
	errc := make(chan error, 2)
	start := time.Now()
	t.Run("held", func(t *testing.T) {
		send := func(p *FaultProxy) {
			resp, _, err := proxyDo(loopbackClient(time.Minute), http.MethodPut, p.URL()+"/bucket/key", "held")
			if err == nil {
				err = errors.New(resp.Status)
			}
			errc <- err
		}
		late := StartFaultProxy(t, rec.srv.URL, 1)
		late.SetFaults(Faults{LateForward: 1, LateDelay: time.Hour})
		go send(late)
		bh := StartFaultProxy(t, rec.srv.URL, 1)
		bh.Blackhole(time.Hour)
		go send(bh)
		waitCounts(t, late, func(c FaultCounts) bool { return c.LateForward == 1 })
		waitCounts(t, bh, func(c FaultCounts) bool { return c.Blackholed == 1 })
	})
	for range 2 {
		select {
		case err := <-errc:
			wantConnError(t, "a request held when the proxy closed", nil, err)
		case <-time.After(5 * time.Second):
			t.Fatal("a request held when the proxy closed was not released")
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closing took %v", d)
	}
	if n := rec.count(); n != 0 {
		t.Errorf("upstream got %d requests, want none", n)
	}
}

func TestFaultProxySetFaultsChecks(t *testing.T) {
	p := StartFaultProxy(t, "http://127.0.0.1:1", 1)
	for _, f := range []Faults{{ServerError: 1.5}, {SlowDown: -0.1}, {LateDelay: -time.Second}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetFaults(%+v) did not panic", f)
				}
			}()
			p.SetFaults(f)
		}()
	}
}

// TestFaultProxyDetach: with Detach, a request whose client hangs up while
// the server works on it is carried to its end; without, it is cancelled.
func TestFaultProxyDetach(t *testing.T) {
	for _, detach := range []bool{false, true} {
		t.Run(fmt.Sprintf("detach=%v", detach), func(t *testing.T) {
			finished := make(chan bool, 1)
			rec := startUpstreamRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(300 * time.Millisecond):
					finished <- true
					w.WriteHeader(http.StatusOK)
				case <-r.Context().Done():
					finished <- false
				}
			})
			p := StartFaultProxy(t, rec.srv.URL, 1)
			p.SetFaults(Faults{Detach: detach})
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, _, err := proxyDoCtx(ctx, loopbackClient(5*time.Second), http.MethodPut, p.URL()+"/bucket/key", "body")
				errc <- err
			}()
			rec.waitHit(t, 5*time.Second)
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("PUT given up: got %v, want context.Canceled", err)
			}
			select {
			case got := <-finished:
				if got != detach {
					t.Fatalf("the server finished the request: %v, want %v", got, detach)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the server's handler never ended")
			}
			if c := p.Counts(); c.Faults() != 0 {
				t.Errorf("Counts() = %+v: Detach is no fault", c)
			}
		})
	}
}
