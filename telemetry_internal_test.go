package objsync

import (
	"context"
	"testing"
	"time"

	"github.com/objsync/objsync/mem"
)

// TestTelemetryNoProviderAllocs: without a provider, Lock and Unlock allocate
// no more than lock and unlock, which they wrap.
func TestTelemetryNoProviderAllocs(t *testing.T) {
	s := mem.Namespace(t.Name())
	s.Reset()
	m := NewMutex(s, "k")
	defer m.Close()
	ctx := context.Background()
	lockUnlock := func() {
		if _, err := m.lock(ctx, time.Minute, "", true, false); err != nil {
			t.Fatal(err)
		}
		if _, err := m.unlock(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	lockUnlockWrapped := func() {
		if _, err := m.Lock(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The first runs on a fresh lock allocate less (42 then 44 from the
	// second measurement on): measured once, for nothing.
	testing.AllocsPerRun(500, lockUnlock)
	bare := testing.AllocsPerRun(500, lockUnlock)
	wrapped := testing.AllocsPerRun(500, lockUnlockWrapped)
	// Under the race detector, one test process in four or five counts
	// exactly one allocation more for Lock+Unlock in every measurement
	// (58 and 59, also in the least of five each; 8 of 30 processes on
	// the code before this test changed), never without it (0 of 30): one
	// is allowed there, where the detector's runtime decides.
	slack := 0.0
	if raceEnabled {
		slack = 1
	}
	if wrapped > bare+slack {
		t.Errorf("Lock+Unlock without a provider: %v allocs, lock+unlock %v", wrapped, bare)
	}
}
