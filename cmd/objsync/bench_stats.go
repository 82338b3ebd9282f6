//go:build unix

package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// holdRecord is one hold of the lock, with instants in nanoseconds on
// CLOCK_MONOTONIC, which all processes of a host share: so holds recorded
// by different processes can be compared. Acquired is taken after Lock
// returned and Released before Unlock was called, so a record lies within
// the real hold: two records that overlap prove two holders at once.
type holdRecord struct {
	Proc      int   `json:"proc"` // -1 for the uncontended phase, in the parent
	Goroutine int   `json:"goroutine"`
	Fence     int64 `json:"fence"`
	Called    int64 `json:"called"`   // Lock was called
	Acquired  int64 `json:"acquired"` // Lock returned
	Released  int64 `json:"released"` // Unlock is about to be called
	Unlocked  int64 `json:"unlocked"` // Unlock returned
}

// clockMonotonic returns the time on CLOCK_MONOTONIC in nanoseconds.
// Go's own monotonic readings are per process; this clock is the host's.
func clockMonotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // CLOCK_MONOTONIC exists on every unix Go supports
	}
	return ts.Nano()
}

// waitRecord is a Lock that had not returned when the bench ended.
type waitRecord struct {
	Proc      int   `json:"proc"`
	Goroutine int   `json:"goroutine"`
	Called    int64 `json:"called"`
	Ended     int64 `json:"ended"` // when it was cancelled
}

func (h holdRecord) who() string {
	if h.Proc < 0 {
		return "uncontended phase"
	}
	return fmt.Sprintf("process %d goroutine %d", h.Proc, h.Goroutine)
}

// byAcquisition returns holds sorted in the order the lock was taken.
func byAcquisition(holds []holdRecord) []holdRecord {
	return slices.SortedStableFunc(slices.Values(holds), func(a, b holdRecord) int {
		return cmp.Compare(a.Acquired, b.Acquired)
	})
}

// checkExclusion returns a description of every violation of mutual
// exclusion among holds: a hold acquired before an earlier one was
// released, and a fence not greater than the one acquired before it.
// Instants are given in seconds from origin.
func checkExclusion(holds []holdRecord, origin int64) []string {
	at := func(ns int64) string { return fmt.Sprintf("%.6fs", float64(ns-origin)/1e9) }
	var violations []string
	s := byAcquisition(holds)
	last := -1 // the hold released last so far: a long one may cover several
	for i, h := range s {
		if last >= 0 {
			if l := s[last]; h.Acquired <= l.Released {
				violations = append(violations, fmt.Sprintf("two holders at once: fence %d (%s) held from %s to %s, and fence %d (%s) acquired at %s",
					l.Fence, l.who(), at(l.Acquired), at(l.Released), h.Fence, h.who(), at(h.Acquired)))
			}
			if p := s[i-1]; h.Fence <= p.Fence {
				violations = append(violations, fmt.Sprintf("fences out of order: fence %d (%s) acquired at %s, after fence %d (%s) at %s",
					h.Fence, h.who(), at(h.Acquired), p.Fence, p.who(), at(p.Acquired)))
			}
		}
		if last < 0 || h.Released > s[last].Released {
			last = i
		}
	}
	return violations
}

// contention holds the figures of the contended phase that depend on the
// order of holds.
type contention struct {
	gaps   []int64 // release to next acquisition, while someone waited, ns
	maxRun int
}

// analyse measures gaps and runs in the holds of the contended phase and
// the Locks still waiting at its end, with contender ids from id. A gap
// counts only when some Lock had been called before the release and
// returned after it (or never): the lock sat free while wanted. maxRun is
// the most holds in a row by one contender within one wait of another.
func analyse(holds []holdRecord, unfinished []waitRecord, id func(proc, goroutine int) int) contention {
	s := byAcquisition(holds)
	// A wait from called to ended, by contender who.
	type wait struct {
		who           int
		called, ended int64
	}
	waits := make([]wait, 0, len(s)+len(unfinished))
	for _, h := range s {
		waits = append(waits, wait{id(h.Proc, h.Goroutine), h.Called, h.Acquired})
	}
	for _, w := range unfinished {
		waits = append(waits, wait{id(w.Proc, w.Goroutine), w.Called, w.Ended})
	}
	var c contention
	// earliest[i] is the earliest Lock call among holds i and later.
	earliest := make([]int64, len(s)+1)
	earliest[len(s)] = math.MaxInt64
	for i := len(s) - 1; i >= 0; i-- {
		earliest[i] = min(s[i].Called, earliest[i+1])
	}
	for i := 0; i+1 < len(s); i++ {
		wanted := earliest[i+1] < s[i].Released
		for _, w := range unfinished {
			wanted = wanted || (w.Called < s[i].Released && s[i].Released < w.Ended)
		}
		if wanted {
			c.gaps = append(c.gaps, s[i+1].Acquired-s[i].Released)
		}
	}
	// run[k] is how many holds in a row, ending with hold k, one
	// contender had.
	run := make([]int, len(s))
	for k, h := range s {
		run[k] = 1
		if k > 0 && id(s[k-1].Proc, s[k-1].Goroutine) == id(h.Proc, h.Goroutine) {
			run[k] = run[k-1] + 1
		}
	}
	acquiredBy := func(t int64) int { // the first hold acquired at t or later
		i, _ := slices.BinarySearchFunc(s, t, func(h holdRecord, t int64) int { return cmp.Compare(h.Acquired, t) })
		return i
	}
	for _, w := range waits {
		// The holds acquired while w waited, its own excluded.
		first, end := acquiredBy(w.called+1), acquiredBy(w.ended)
		for k := first; k < end; k++ {
			if id(s[k].Proc, s[k].Goroutine) != w.who {
				c.maxRun = max(c.maxRun, min(run[k], k-first+1))
			}
		}
	}
	return c
}

// latency summarises durations, in milliseconds.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// summarise returns the percentiles of ns, by nearest rank; all zero if
// ns is empty.
func summarise(ns []int64) latency {
	s := slices.Sorted(slices.Values(ns))
	pct := func(p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		return millis(s[max(int(math.Ceil(p/100*float64(len(s))))-1, 0)])
	}
	return latency{N: len(s), P50: pct(50), P90: pct(90), P99: pct(99), Max: pct(100)}
}

// millis converts nanoseconds to milliseconds, to the microsecond.
func millis(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }

// duration converts milliseconds back, for printing.
func duration(ms float64) time.Duration { return time.Duration(math.Round(ms * 1e6)) }
