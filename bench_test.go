package objsync_test

import (
	"context"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/mem"
)

// BenchmarkLockUnlock measures an uncontended Lock and Unlock, and reports
// the store requests each pair costs.
func BenchmarkLockUnlock(b *testing.B) {
	b.Run("mem", func(b *testing.B) {
		s := mem.Namespace(b.Name())
		benchLockUnlock(b, objsync.NewMutex(s, "k"), func() int64 { return s.Requests().Total() })
	})
	b.Run("file", func(b *testing.B) {
		m, err := objsync.Open("file", b.TempDir()+"/lock")
		if err != nil {
			b.Fatal(err)
		}
		benchLockUnlock(b, m, nil)
	})
}

func benchLockUnlock(b *testing.B, m *objsync.Mutex, requests func() int64) {
	defer m.Close()
	ctx := context.Background()
	var before int64
	if requests != nil {
		before = requests()
	}
	for b.Loop() {
		if _, err := m.Lock(ctx, time.Minute); err != nil {
			b.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if requests != nil {
		b.ReportMetric(float64(requests()-before)/float64(b.N), "requests/op")
	}
}
