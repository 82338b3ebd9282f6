package objsync_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/mem"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkLockUnlock measures an uncontended Lock and Unlock, and reports
// the store requests each pair costs.
func BenchmarkLockUnlock(b *testing.B) {
	b.Run("mem", func(b *testing.B) {
		s := mem.Namespace(b.Name())
		benchLockUnlock(b, objsync.NewMutex(s, "k"), func() int64 { return s.Requests().Total() })
	})
	// With the SDK recording every metric and span (dropped at once), for
	// the cost of telemetry next to the line above.
	b.Run("mem/telemetry", func(b *testing.B) {
		s := mem.Namespace(b.Name())
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		defer mp.Shutdown(context.Background())
		defer tp.Shutdown(context.Background())
		m := objsync.NewMutex(s, "k", objsync.WithMeterProvider(mp), objsync.WithTracerProvider(tp))
		benchLockUnlock(b, m, func() int64 { return s.Requests().Total() })
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

// view gives a store a Location of its own, so that Mutexes on different
// views share nothing, as if they ran in different processes.
type view struct {
	*mem.Store
	name string
}

func (v view) Location(key string) string { return v.Store.Location(key) + "#" + v.name }

// BenchmarkContended has 8 goroutines take turns on one lock with a store
// latency of 1ms, either as goroutines of one process (one poller and a
// local hand-off) or as 8 processes (each polls the store), with plain
// and queue locks. It reports the store requests per hold.
func BenchmarkContended(b *testing.B) {
	const goroutines = 8
	for _, tc := range []struct {
		name   string
		shared bool
		opts   []objsync.Option
	}{
		{"one process", true, nil},
		{"separate processes", false, nil},
		{"queue/one process", true, []objsync.Option{objsync.WithQueue()}},
		{"queue/separate processes", false, []objsync.Option{objsync.WithQueue()}},
	} {
		shared := tc.shared
		b.Run(tc.name, func(b *testing.B) {
			s := mem.Namespace(b.Name())
			s.Reset()
			s.SetLatency(time.Millisecond)
			var mus []*objsync.Mutex
			for i := range goroutines {
				st := view{s, "shared"}
				if !shared {
					st.name = fmt.Sprint(i)
				}
				m := objsync.NewMutex(st, "k", append(tc.opts, objsync.WithBackoff(time.Millisecond, 20*time.Millisecond))...)
				defer m.Close()
				mus = append(mus, m)
			}
			ctx := context.Background()
			var next atomic.Int64
			b.ResetTimer()
			before := s.Requests().Total()
			var wg sync.WaitGroup
			for _, m := range mus {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := m.Lock(ctx, time.Minute); err != nil {
							b.Error(err)
							return
						}
						if err := m.Unlock(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(s.Requests().Total()-before)/float64(b.N), "requests/op")
		})
	}
}
