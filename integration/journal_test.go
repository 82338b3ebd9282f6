package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The chaos tests judge OS processes by what they write in journals, on the
// one clock that all processes of this host share: CLOCK_MONOTONIC. Each
// process appends to a journal of its own, one line per write(2), so that
// a line is either whole or absent when the process is killed.
//
//	acq FENCE T            the process holds the lock with FENCE from T on
//	act FENCE T            it acted as holder at T (it read T, then checked
//	                       that the hold was still in force)
//	lost FENCE T ISLOST DONE  it learnt at T that the hold had ended: ISLOST
//	                       is 1 if Err wrapped ErrLockLost, DONE if Done was
//	                       closed by then
//	unlock FENCE T         it called Unlock at T, after its last act

// monotonicNow reads CLOCK_MONOTONIC, in nanoseconds.
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// journal is one process's journal.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &journal{f: f}, nil
}

// record appends one line; a journal that cannot be written ends the
// process, which would otherwise act unrecorded.
func (j *journal) record(kind string, fence, at int64, extra ...int) {
	line := fmt.Sprintf("%s %d %d", kind, fence, at)
	for _, x := range extra {
		line += " " + strconv.Itoa(x)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.WriteString(line + "\n"); err != nil {
		fmt.Fprintln(os.Stderr, "journal:", err)
		os.Exit(3)
	}
}

// entry is one journal line.
type entry struct {
	kind          string
	fence, at     int64
	isLost, done  bool
	journal, line int // which journal, which line of it
}

// freeze is a process stopped with SIGSTOP from stopped to resumed.
type freeze struct {
	journal          int
	stopped, resumed int64
	longerThanLoss   bool // long enough that the hold must have ended
}

// holdRecord is what the journals say of one acquisition.
type holdRecord struct {
	fence       int64
	journal     int
	first, last int64 // the acquisition and the last act
	lost, ended bool  // a lost or unlock line follows
}

// verdict is what the checker found.
type verdict struct {
	holds      int
	violations []string
}

// readJournals parses the journals at paths, in order.
func readJournals(paths []string) ([][]entry, error) {
	out := make([][]entry, len(paths))
	for i, p := range paths {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue // the process never held the lock
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				f.Close()
				return nil, fmt.Errorf("%s:%d: %q is not a journal line", filepath.Base(p), n, sc.Text())
			}
			e := entry{kind: fields[0], journal: i, line: n}
			e.fence, err = strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				e.at, err = strconv.ParseInt(fields[2], 10, 64)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s:%d: %v", filepath.Base(p), n, err)
			}
			if e.kind == "lost" && len(fields) == 5 {
				e.isLost, e.done = fields[3] == "1", fields[4] == "1"
			}
			out[i] = append(out[i], e)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkJournals judges the journals of every process that contended for
// one lock:
//   - every acquisition has a fence of its own;
//   - ordered by fence, every hold's last act comes before the first
//     moment of every hold with a higher fence: holds never overlap, and
//     fences increase in the order of acquisition;
//   - a process frozen for longer than the loss deadline while it held the
//     lock never acts under that hold after it resumed, and, unless it was
//     killed first, reports the loss with Err wrapping ErrLockLost and Done
//     already closed.
func checkJournals(journals [][]entry, freezes []freeze, names []string) verdict {
	var v verdict
	fail := func(format string, args ...any) {
		if len(v.violations) < 20 {
			v.violations = append(v.violations, fmt.Sprintf(format, args...))
		}
	}
	byFence := map[int64]*holdRecord{}
	for j, entries := range journals {
		for _, e := range entries {
			h := byFence[e.fence]
			if e.kind == "acq" {
				if h != nil {
					fail("fence %d acquired twice: %s and %s:%d", e.fence, names[h.journal], names[j], e.line)
					continue
				}
				byFence[e.fence] = &holdRecord{fence: e.fence, journal: j, first: e.at, last: e.at}
				continue
			}
			if h == nil || h.journal != j {
				fail("%s:%d: %s under fence %d, which this process did not acquire", names[j], e.line, e.kind, e.fence)
				continue
			}
			switch e.kind {
			case "act":
				if h.lost || h.ended {
					fail("%s:%d: acted under fence %d after its hold ended", names[j], e.line, e.fence)
				}
				h.last = max(h.last, e.at)
			case "lost":
				h.lost = true
				if !e.isLost || !e.done {
					fail("%s:%d: the end of fence %d was reported with ErrLockLost=%v, Done closed=%v", names[j], e.line, e.fence, e.isLost, e.done)
				}
			case "unlock":
				h.ended = true
			default:
				fail("%s:%d: unknown record %q", names[j], e.line, e.kind)
			}
		}
	}
	holds := make([]*holdRecord, 0, len(byFence))
	for _, h := range byFence {
		holds = append(holds, h)
	}
	sort.Slice(holds, func(a, b int) bool { return holds[a].fence < holds[b].fence })
	v.holds = len(holds)
	// Walk from the highest fence down, keeping the earliest start of any
	// higher fence.
	var next *holdRecord
	for i := len(holds) - 1; i >= 0; i-- {
		h := holds[i]
		if next != nil && h.last >= next.first {
			fail("fence %d (%s) acted at %s, at or after fence %d (%s) began at %s: two holders for %v",
				h.fence, names[h.journal], mono(h.last), next.fence, names[next.journal], mono(next.first),
				time.Duration(h.last-next.first))
		}
		if next == nil || h.first < next.first {
			next = h
		}
	}
	for _, fr := range freezes {
		if !fr.longerThanLoss {
			continue
		}
		var held int64 // the fence in force when the process was stopped
		for _, e := range journals[fr.journal] {
			if e.at > fr.stopped {
				break
			}
			switch e.kind {
			case "acq":
				held = e.fence
			case "lost", "unlock":
				held = 0
			}
		}
		if held == 0 {
			continue
		}
		reported := false
		for _, e := range journals[fr.journal] {
			if e.fence != held || e.at <= fr.resumed {
				continue
			}
			switch e.kind {
			case "act":
				fail("%s:%d: acted under fence %d %v after it resumed from a stop of %v, longer than its lease",
					names[fr.journal], e.line, held, time.Duration(e.at-fr.resumed), time.Duration(fr.resumed-fr.stopped))
			case "lost":
				reported = true
			}
		}
		if !reported && !killedAfter(journals[fr.journal], fr) {
			fail("%s: never reported the loss of fence %d after a stop of %v", names[fr.journal], held, time.Duration(fr.resumed-fr.stopped))
		}
	}
	return v
}

// killedAfter reports whether the journal ends before the process could
// have noticed anything after the freeze: it has no line written after
// the resumption at all (it was killed at once, or the run ended).
func killedAfter(entries []entry, fr freeze) bool {
	for _, e := range entries {
		if e.at > fr.resumed {
			return false
		}
	}
	return true
}

// mono formats a CLOCK_MONOTONIC reading.
func mono(ns int64) string { return fmt.Sprintf("%.6fs", float64(ns)/1e9) }

// TestJournalChecker: the checker finds each kind of violation it is for,
// and passes journals without one.
func TestJournalChecker(t *testing.T) {
	const s = int64(time.Second)
	e := func(kind string, fence, at int64, extra ...bool) entry {
		x := entry{kind: kind, fence: fence, at: at}
		if len(extra) == 2 {
			x.isLost, x.done = extra[0], extra[1]
		}
		return x
	}
	// Two processes: fence 1 from 1s to 2s, fence 2 from 3s to 4s.
	good := func() [][]entry {
		return [][]entry{
			{e("acq", 1, 1*s), e("act", 1, 2*s), e("unlock", 1, 2*s+1)},
			{e("acq", 2, 3*s), e("act", 2, 4*s), e("unlock", 2, 4*s+1)},
		}
	}
	names := []string{"a", "b"}
	for _, tc := range []struct {
		name     string
		change   func(j [][]entry) ([][]entry, []freeze)
		violates string // a part of the message, "" for none
	}{
		{"good", func(j [][]entry) ([][]entry, []freeze) { return j, nil }, ""},
		{"overlap", func(j [][]entry) ([][]entry, []freeze) {
			j[0][1].at = 3*s + 1
			return j, nil
		}, "two holders"},
		{"fences out of order", func(j [][]entry) ([][]entry, []freeze) {
			j[1] = []entry{e("acq", 2, s/2), e("act", 2, s/2+1)}
			return j, nil
		}, "two holders"},
		{"fence twice", func(j [][]entry) ([][]entry, []freeze) {
			j[1][0].fence, j[1][1].fence, j[1][2].fence = 1, 1, 1
			return j, nil
		}, "acquired twice"},
		{"act after unlock", func(j [][]entry) ([][]entry, []freeze) {
			j[0] = append(j[0], e("act", 1, 2*s+2))
			return j, nil
		}, "after its hold ended"},
		{"loss not an ErrLockLost", func(j [][]entry) ([][]entry, []freeze) {
			j[0][2] = e("lost", 1, 2*s+1, false, true)
			return j, nil
		}, "ErrLockLost=false"},
		{"loss with Done open", func(j [][]entry) ([][]entry, []freeze) {
			j[0][2] = e("lost", 1, 2*s+1, true, false)
			return j, nil
		}, "Done closed=false"},
		{"acts after a long stop", func(j [][]entry) ([][]entry, []freeze) {
			j[1] = append(j[1][:2], e("act", 2, 6*s), e("unlock", 2, 6*s+1))
			return j, []freeze{{journal: 1, stopped: 4*s + 1, resumed: 5 * s, longerThanLoss: true}}
		}, "after it resumed"},
		{"loss never reported after a long stop", func(j [][]entry) ([][]entry, []freeze) {
			j[1] = append(j[1][:2], e("acq", 9, 7*s))
			return j, []freeze{{journal: 1, stopped: 4*s + 1, resumed: 5 * s, longerThanLoss: true}}
		}, "never reported the loss"},
		{"loss reported after a long stop", func(j [][]entry) ([][]entry, []freeze) {
			j[1] = append(j[1][:2], e("lost", 2, 5*s+1, true, true))
			return j, []freeze{{journal: 1, stopped: 4*s + 1, resumed: 5 * s, longerThanLoss: true}}
		}, ""},
		{"killed during a long stop", func(j [][]entry) ([][]entry, []freeze) {
			j[1] = j[1][:2]
			return j, []freeze{{journal: 1, stopped: 4*s + 1, resumed: 5 * s, longerThanLoss: true}}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, fr := tc.change(good())
			for i := range j {
				for k := range j[i] {
					j[i][k].journal, j[i][k].line = i, k+1
				}
			}
			v := checkJournals(j, fr, names)
			switch {
			case tc.violates == "" && len(v.violations) != 0:
				t.Fatalf("violations %q, want none", v.violations)
			case tc.violates != "" && (len(v.violations) == 0 || !strings.Contains(strings.Join(v.violations, "\n"), tc.violates)):
				t.Fatalf("violations %q, want one saying %q", v.violations, tc.violates)
			}
		})
	}
}
