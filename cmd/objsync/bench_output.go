//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/internal/countstore"
)

// benchResult is what bench --json prints. Its fields are documented in
// benchHelp and the package documentation; keep them stable.
type benchResult struct {
	Lock              string            `json:"lock"`
	Procs             int               `json:"procs"`
	Goroutines        int               `json:"goroutines"`
	HoldsEach         int               `json:"holds_each"`  // --holds; 0 with --duration
	DurationMS        float64           `json:"duration_ms"` // --duration; 0 with --holds
	HoldMS            float64           `json:"hold_ms"`
	TTLMS             int64             `json:"ttl_ms"`
	Holds             int               `json:"holds"`
	ElapsedMS         float64           `json:"elapsed_ms"`
	HoldsPerSecond    float64           `json:"holds_per_second"`
	WaitMS            latency           `json:"wait_ms"`
	UnfinishedWaits   int               `json:"unfinished_waits"` // in wait_ms: Locks still waiting when --duration ended
	GapMS             latency           `json:"gap_ms"`
	RequestsPerHold   requests          `json:"requests_per_hold"`
	HoldsPerContender spread            `json:"holds_per_contender"`
	MaxRun            int               `json:"max_run"`
	Uncontended       uncontendedResult `json:"uncontended"`
	Cost              cost              `json:"cost"`
	Violations        int               `json:"violations"`
	Checked           int               `json:"checked"` // holds checked for exclusion, every phase's
	Scratch           string            `json:"scratch"`
	ScratchRemoved    bool              `json:"scratch_removed"`
}

type uncontendedResult struct {
	Cycles           int      `json:"cycles"`
	CycleMS          latency  `json:"cycle_ms"`
	RequestsPerCycle requests `json:"requests_per_cycle"`
	ReadMS           float64  `json:"read_ms"`  // median round trip of a read
	WriteMS          float64  `json:"write_ms"` // and of a conditional write
	Limit            float64  `json:"cycle_over_two_writes"`
}

// requests are store requests per hold or cycle, by kind.
type requests struct {
	Read               float64 `json:"read"`
	Write              float64 `json:"write"`
	PreconditionFailed float64 `json:"precondition_failed"`
	Error              float64 `json:"error"`
	Total              float64 `json:"total"`
}

type spread struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

type cost struct {
	Prices                 string  `json:"prices"`
	PutUSDPer1000          float64 `json:"put_usd_per_1000"`
	GetUSDPer1000          float64 `json:"get_usd_per_1000"`
	RenewEveryMS           float64 `json:"renew_every_ms"`
	HeldRequestsPerHour    float64 `json:"held_requests_per_hour"`
	HeldUSDPerHour         float64 `json:"held_usd_per_hour"`
	HandoffRequestsPer1000 float64 `json:"handoff_requests_per_1000"`
	HandoffUSDPer1000      float64 `json:"handoff_usd_per_1000"`
}

func perUnit(c countstore.Counts, units int) requests {
	per := func(n int64) float64 { return round(float64(n)/float64(max(units, 1)), 3) }
	return requests{Read: per(c.Reads), Write: per(c.Writes), PreconditionFailed: per(c.Preconditions),
		Error: per(c.Errors()), Total: per(c.Total())}
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// results computes the figures of a bench that ran to the end.
func (b *bench) results(r *benchResult, workers []*workerProc, violations int) {
	o := b.o
	r.Lock, r.Procs, r.Goroutines, r.HoldsEach = b.m.String(), o.procs, o.goroutines, o.holds
	r.DurationMS, r.HoldMS, r.TTLMS = millis(o.duration.Nanoseconds()), millis(o.hold.Nanoseconds()), o.ttl.Milliseconds()
	r.Violations, r.Checked = violations, len(b.holds)

	var contended []holdRecord
	var waits []int64
	perContender := make([]int, o.procs*o.goroutines)
	id := func(proc, goroutine int) int { return proc*o.goroutines + goroutine }
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for _, h := range b.holds {
		if h.Proc < 0 {
			continue
		}
		contended = append(contended, h)
		waits = append(waits, h.Acquired-h.Called)
		perContender[id(h.Proc, h.Goroutine)]++
		first, last = min(first, h.Called), max(last, h.Unlocked)
	}
	r.Holds = len(contended)
	if r.Holds > 0 {
		r.ElapsedMS = millis(last - first)
		r.HoldsPerSecond = round(float64(r.Holds)/(float64(last-first)/1e9), 1)
	}
	var unfinished []waitRecord
	for _, w := range workers {
		unfinished = append(unfinished, w.unfinished...)
	}
	for _, w := range unfinished {
		waits = append(waits, w.Ended-w.Called)
	}
	r.WaitMS, r.UnfinishedWaits = summarise(waits), len(unfinished)
	c := analyse(contended, unfinished, id)
	r.GapMS = summarise(c.gaps)
	r.MaxRun = c.maxRun
	r.HoldsPerContender = spread{Min: perContender[0], Max: perContender[0]}
	for _, n := range perContender {
		r.HoldsPerContender.Min, r.HoldsPerContender.Max = min(r.HoldsPerContender.Min, n), max(r.HoldsPerContender.Max, n)
	}
	var counts countstore.Counts
	for _, w := range workers {
		if w.done != nil { // nil: it died, and workerFailure says so
			counts = counts.Add(w.done.Requests)
		}
	}
	r.RequestsPerHold = perUnit(counts, r.Holds)
	if u := &r.Uncontended; u.WriteMS > 0 {
		u.Limit = round(u.CycleMS.P50/(2*u.WriteMS), 2)
	}

	renew := objsync.RenewInterval(o.ttl)
	perHour := float64(time.Hour) / float64(renew)
	handoffs := float64(1000) / float64(max(r.Holds, 1))
	r.Cost = cost{
		Prices: pricesLabel, PutUSDPer1000: pricePut, GetUSDPer1000: priceGet,
		RenewEveryMS:           millis(renew.Nanoseconds()),
		HeldRequestsPerHour:    round(perHour, 3),
		HeldUSDPerHour:         round(perHour*pricePut/1000, 6),
		HandoffRequestsPer1000: round(float64(counts.Total())*handoffs, 3),
		HandoffUSDPer1000:      round((float64(counts.WriteRequests())*pricePut+float64(counts.ReadRequests())*priceGet)/1000*handoffs, 6),
	}
}

func (b *bench) print(r *benchResult) error {
	if b.o.json {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		out.printf("%s\n", data)
		return nil
	}
	o := b.o
	plural := func(n int, what string) string {
		switch {
		case n == 1:
			return fmt.Sprintf("%d %s", n, what)
		case strings.HasSuffix(what, "s"):
			return fmt.Sprintf("%d %ses", n, what)
		}
		return fmt.Sprintf("%d %ss", n, what)
	}
	work := plural(o.holds, "hold") + " each"
	if o.duration > 0 {
		work = fmt.Sprintf("for %v", o.duration)
	}
	ms := func(x float64) string { return threeDigits(duration(x)).String() }
	n := func(x float64) string { return strconv.FormatFloat(round(x, 2), 'f', -1, 64) }
	kinds := func(q requests, per string) string {
		return fmt.Sprintf("%s per %s: %s read, %s write, %s failed precondition, %s error",
			n(q.Total), per, n(q.Read), n(q.Write), n(q.PreconditionFailed), n(q.Error))
	}
	row := func(name, format string, args ...any) { out.printf("%-14s %s\n", name, fmt.Sprintf(format, args...)) }

	row("lock", "%s", r.Lock)
	row("contenders", "%s × %s, %s, hold %v, ttl %v", plural(o.procs, "process"), plural(o.goroutines, "goroutine"), work, o.hold, o.ttl)
	row("contended", "%s in %s: %.1f holds/s", plural(r.Holds, "hold"), ms(r.ElapsedMS), r.HoldsPerSecond)
	unfinished := ""
	if r.UnfinishedWaits > 0 {
		unfinished = fmt.Sprintf("  (%s still waiting at the end included)", plural(r.UnfinishedWaits, "Lock"))
	}
	row("  wait", "p50 %s  p90 %s  p99 %s  max %s%s", ms(r.WaitMS.P50), ms(r.WaitMS.P90), ms(r.WaitMS.P99), ms(r.WaitMS.Max), unfinished)
	if r.GapMS.N == 0 {
		row("  gap", "none: no release found a Lock waiting")
	} else {
		row("  gap", "p50 %s  p99 %s  (free while wanted, %s)", ms(r.GapMS.P50), ms(r.GapMS.P99), plural(r.GapMS.N, "hand-off"))
	}
	row("  requests", "%s", kinds(r.RequestsPerHold, "hold"))
	row("  fairness", "holds per contender %d to %d; longest run while another waited %d",
		r.HoldsPerContender.Min, r.HoldsPerContender.Max, r.MaxRun)
	u := r.Uncontended
	row("uncontended", "%d Lock+Unlock cycles", u.Cycles)
	row("  cycle", "p50 %s  p99 %s", ms(u.CycleMS.P50), ms(u.CycleMS.P99))
	row("  requests", "%s", kinds(u.RequestsPerCycle, "cycle"))
	row("  store", "read %s, conditional write %s (medians of %d)", ms(u.ReadMS), ms(u.WriteMS), roundTripSamples)
	row("  limit", "a cycle takes %.2f × two writes, the physical limit", u.Limit)
	label, rest, _ := strings.Cut(pricesLabel, "; ")
	row("cost", "%s;", label)
	row("", "%s", rest)
	row("  held", "%.0f renewals/hour at ttl %v (every %s): $%.4f/hour",
		r.Cost.HeldRequestsPerHour, o.ttl, ms(r.Cost.RenewEveryMS), r.Cost.HeldUSDPerHour)
	row("  hand-offs", "%.0f requests per 1,000: $%.4f", r.Cost.HandoffRequestsPer1000, r.Cost.HandoffUSDPer1000)
	if r.Violations == 0 {
		row("exclusion", "%d holds checked: no overlaps, fences increasing", r.Checked)
	} else {
		row("exclusion", "%d holds checked: %s (see stderr)", r.Checked, plural(r.Violations, "VIOLATION"))
	}
	return nil
}

// threeDigits rounds d to three significant digits, which is all that
// measurements of a shared store are worth.
func threeDigits(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for d/unit >= 1000 {
		unit *= 10
	}
	return d.Round(unit)
}

// progress is a line on stderr, rewritten in place, saying how far the
// bench has got; only on a terminal, where it does not end up in logs.
type progress struct {
	mu   sync.Mutex
	text func() string
	stop chan struct{}
	done chan struct{}
}

// startProgress starts the line, and returns nil if stderr is not a
// terminal. The methods of a nil *progress do nothing.
func startProgress() *progress {
	if _, tty := termWidth(); !tty {
		return nil
	}
	p := &progress{text: func() string { return "" }, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				out.print(os.Stderr, "\r\x1b[K")
				return
			case <-tick.C:
				p.mu.Lock()
				text := "objsync: bench: " + p.text()
				p.mu.Unlock()
				width, _ := termWidth()
				out.print(os.Stderr, "\r\x1b[K"+truncate(text, width-1))
			}
		}
	}()
	return p
}

func (p *progress) set(text string) { p.setFunc(func() string { return text }) }

func (p *progress) setFunc(text func() string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.text = text
}

// end erases the line, before the results or an error are printed.
func (p *progress) end() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
}
