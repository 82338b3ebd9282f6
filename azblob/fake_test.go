package azblob

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// reply is one scripted answer of the fake blob service.
type reply struct {
	status int
	code   string // Azure error code, for error answers
	etag   string
	body   string
	date   string // the Date header: empty for now, "none" for none
}

// request is what the fake saw.
type request struct {
	method string
	path   string
	// rawPath is the path as sent, escaped.
	rawPath string
	query   string
	header  http.Header
	body    string
}

// fake answers like the Azure blob service, from a script: each request
// takes the next reply, and the last reply repeats.
type fake struct {
	// url is the fake's blob service URL, for the account "acct".
	url string

	mu       sync.Mutex
	replies  []reply
	requests []request
}

// serve starts a fake on 127.0.0.1, closed when the test ends.
func serve(t *testing.T, replies ...reply) *fake {
	t.Helper()
	f := &fake{replies: replies}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/acct"
	return f
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, request{r.Method, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), string(body)})
	rep := f.replies[0]
	if len(f.replies) > 1 {
		f.replies = f.replies[1:]
	}
	f.mu.Unlock()

	switch rep.date {
	case "":
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
	case "none":
		w.Header()["Date"] = nil // net/http adds none then
	default:
		w.Header().Set("Date", rep.date)
	}
	if rep.etag != "" {
		w.Header().Set("ETag", rep.etag)
	}
	if rep.code != "" {
		w.Header().Set("x-ms-error-code", rep.code)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(rep.status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>scripted %s</Message></Error>`, rep.code, rep.code)
		return
	}
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

// seen returns the requests the fake has answered, in order.
func (f *fake) seen() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}
