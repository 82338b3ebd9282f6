package objsync_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/mem"
)

// loggedAttr is an attribute as logged, with its record's message.
type loggedAttr struct {
	msg  string
	attr slog.Attr
}

// recordingHandler keeps every attribute logged through it.
type recordingHandler struct {
	mu    *sync.Mutex
	attrs *[]loggedAttr
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.Attrs(func(a slog.Attr) bool {
		*h.attrs = append(*h.attrs, loggedAttr{r.Message, a})
		return true
	})
	return nil
}

// TestLogDurations: objsync logs a duration as a duration (slog's
// KindDuration, which handlers print as "1.5s" or in the unit they
// choose), never as a number of nanoseconds or of seconds; the only numbers
// it logs are counts and identifiers.
func TestLogDurations(t *testing.T) {
	var (
		mu    sync.Mutex
		attrs []loggedAttr
	)
	logger := slog.New(recordingHandler{&mu, &attrs})
	base := mem.Namespace(t.Name())
	base.Reset()
	ctx := context.Background()

	// A plain lock: acquired, waited for, taken over once expired.
	holder := objsync.NewMutex(view{base, "holder"}, "plain", objsync.WithLogger(logger), objsync.WithoutRenewal(), objsync.WithoutProcessCheck())
	defer holder.Close()
	if _, err := holder.Lock(ctx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waiter := objsync.NewMutex(view{base, "waiter"}, "plain", objsync.WithLogger(logger), objsync.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	defer waiter.Close()
	if _, err := waiter.Lock(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// A queue lock: a waiter in the queue.
	qh := objsync.NewMutex(view{base, "qh"}, "queue", objsync.WithQueue(), objsync.WithLogger(logger))
	defer qh.Close()
	if _, err := qh.Lock(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	qw := objsync.NewMutex(view{base, "qw"}, "queue", objsync.WithQueue(), objsync.WithLogger(logger), objsync.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	defer qw.Close()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := qw.Lock(short, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held queue lock: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	numbers := []string{"fence", "pid", "place", "ticket", "head", "ahead"} // counts and identifiers
	durations := map[string]bool{}
	var msgs []string
	for _, l := range attrs {
		key, value := l.attr.Key, l.attr.Value
		msgs = append(msgs, l.msg)
		switch value.Kind() {
		case slog.KindDuration:
			durations[key] = true
		case slog.KindFloat64, slog.KindUint64:
			t.Errorf("%s: %s: a number, %v", l.msg, key, value)
		case slog.KindInt64:
			if !slices.Contains(numbers, key) {
				t.Errorf("%s: %s: an integer, %v: a duration in nanoseconds?", l.msg, key, value)
			}
		}
	}
	// The run logged these durations: the test saw what it checks.
	for _, key := range []string{"ttl", "expires_in", "unchanged", "next_poll"} {
		if !durations[key] {
			t.Errorf("no duration %s logged; messages: %q", key, slices.Compact(msgs))
		}
	}
}
