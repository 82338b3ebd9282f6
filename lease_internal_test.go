package objsync

import (
	"bytes"
	"context"
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
