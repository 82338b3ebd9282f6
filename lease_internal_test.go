package objsync

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync/mem"
)

// lockedBuffer is a bytes.Buffer for a logger used by several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDeadlineAfterUnlock: a loss deadline that fires while the hold is
// being ended must not be re-armed by it, and report a hold that Unlock
// released as lost.
func TestDeadlineAfterUnlock(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.Reset()
	var logs lockedBuffer
	m := NewMutex(s, "lock", WithoutRenewal(), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	defer m.Close()
	const ttl = 300 * time.Millisecond
	if _, err := m.Lock(context.Background(), ttl); err != nil {
		t.Fatal(err)
	}
	h := m.current()
	time.Sleep(ttl / 2)
	h.extend(time.Now()) // as a write would have
	// The first deadline fires while leaseMu is taken: expire waits for
	// it, and so does the Unlock started meanwhile, well before the
	// deadline that the write moved it to.
	h.leaseMu.Lock()
	time.Sleep(h.timing.lossAfter - ttl/2 + 20*time.Millisecond)
	unlocked := make(chan error)
	go func() { unlocked <- m.Unlock(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	h.leaseMu.Unlock()
	if err := <-unlocked; err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl)
	if strings.Contains(logs.String(), "lock lost") {
		t.Fatalf("Unlock returned nil, then the hold was reported lost:\n%s", logs.String())
	}
}

// TestErrAfterSuspend: a process stopped (SIGSTOP, a paused VM) past its
// loss deadline resumes with the deadline's timer overdue but not yet run,
// and a holder checking Err before acting may run first. Err must read the
// clock, not wait for the timer, and end the hold at once.
func TestErrAfterSuspend(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.Reset()
	m := NewMutex(s, "lock", WithoutRenewal())
	defer m.Close()
	if _, err := m.Lock(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	h := m.current()
	// As after a stop: the deadline passed and its timer has not run.
	h.leaseMu.Lock()
	h.deadline.Stop()
	h.sentAt = h.sentAt.Add(-h.timing.lossAfter)
	h.leaseMu.Unlock()
	if err := m.Err(); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Err after the loss deadline = %v, want ErrLockLost", err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Err reported the loss but Done is open")
	}
	if f := m.Fence(); f != 0 {
		t.Fatalf("Fence after the loss deadline = %d, want 0", f)
	}
}

// blockingHandler blocks the first warning until released, so that a test
// can hold a goroutine in the middle of reporting a loss.
type blockingHandler struct {
	entered, release chan struct{}
	once             sync.Once
}

func (b *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (b *blockingHandler) WithAttrs([]slog.Attr) slog.Handler       { return b }
func (b *blockingHandler) WithGroup(string) slog.Handler            { return b }

func (b *blockingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		b.once.Do(func() {
			close(b.entered)
			<-b.release
		})
	}
	return nil
}

// TestErrWhileTimerReports: the loss deadline's timer and Err both find
// the deadline passed (after a SIGSTOP, say). Err must report the loss even
// while the timer's goroutine is still in the middle of ending the hold.
// make test's chaos run found this: a worker resumed from a 2.2s stop
// acted 0.4ms later because Err returned nil, the timer having marked the
// hold as ended before recording why.
func TestErrWhileTimerReports(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.Reset()
	h := &blockingHandler{entered: make(chan struct{}), release: make(chan struct{})}
	m := NewMutex(s, "lock", WithoutRenewal(), WithLogger(slog.New(h)))
	defer m.Close()
	if _, err := m.Lock(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	hd := m.current()
	hd.leaseMu.Lock()
	hd.deadline.Stop()
	hd.sentAt = hd.sentAt.Add(-hd.timing.lossAfter)
	hd.leaseMu.Unlock()
	timerDone := make(chan struct{})
	go func() { hd.expire(); close(timerDone) }() // as the overdue timer would
	select {
	case <-h.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the timer's expire never reported the loss")
	}
	err := m.Err()
	close(h.release)
	<-timerDone
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("Err while the timer reports the loss = %v, want ErrLockLost", err)
	}
}
