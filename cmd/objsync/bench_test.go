//go:build unix

package main

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync"
)

// TestBench runs bench on the file driver with two processes of two
// goroutines each, and checks that its figures add up.
func TestBench(t *testing.T) {
	dir := t.TempDir()
	dsn := "file://" + dir + "/lock"
	r := runCLI(t, dir, "bench", "--json", "--procs", "2", "--goroutines", "2", "--holds", "5", "--hold", "1ms", dsn)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("bench: exit %d, stderr %q", r.code, r.stderr)
	}
	// The fields scripts rely on, by name.
	var fields map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &fields); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.stdout)
	}
	for _, path := range []string{
		"holds", "holds_per_second", "max_run", "violations",
		"wait_ms.p50", "wait_ms.p90", "wait_ms.p99", "wait_ms.max",
		"gap_ms.p50", "gap_ms.p90", "gap_ms.p99", "gap_ms.max",
		"requests_per_hold.read", "requests_per_hold.write", "requests_per_hold.precondition_failed",
		"requests_per_hold.error", "requests_per_hold.total",
		"uncontended.cycle_ms.p50", "uncontended.cycle_ms.p99", "uncontended.requests_per_cycle.total",
		"uncontended.read_ms", "uncontended.write_ms", "uncontended.cycle_over_two_writes",
		"holds_per_contender.min", "holds_per_contender.max",
		"cost.held_requests_per_hour", "cost.handoff_usd_per_1000",
	} {
		var v any = fields
		for name := range strings.SplitSeq(path, ".") {
			v = v.(map[string]any)[name]
		}
		if _, ok := v.(float64); !ok {
			t.Errorf("%s = %v, want a number", path, v)
		}
	}

	var res benchResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	const contenders, each = 4, 5
	if res.Holds != contenders*each || res.WaitMS.N != res.Holds || res.UnfinishedWaits != 0 {
		t.Errorf("holds %d, wait samples %d, unfinished %d; want %d, %[4]d, 0", res.Holds, res.WaitMS.N, res.UnfinishedWaits, contenders*each)
	}
	if res.HoldsPerContender != (spread{each, each}) {
		t.Errorf("holds per contender %+v, want %d each", res.HoldsPerContender, each)
	}
	if res.Violations != 0 || res.Checked != res.Holds+uncontendedCycles+1 {
		t.Errorf("violations %d, checked %d; want 0, %d", res.Violations, res.Checked, res.Holds+uncontendedCycles+1)
	}
	if res.Lock != dsn || res.Procs != 2 || res.Goroutines != 2 || res.HoldsEach != each || res.HoldMS != 1 || res.TTLMS != 10000 {
		t.Errorf("settings: %+v", res)
	}
	w := res.WaitMS
	if w.N == 0 || !(w.P50 <= w.P90 && w.P90 <= w.P99 && w.P99 <= w.Max) || res.HoldsPerSecond <= 0 || res.ElapsedMS <= 0 {
		t.Errorf("wait %+v, %v holds/s in %vms: not plausible", w, res.HoldsPerSecond, res.ElapsedMS)
	}
	if res.GapMS.N > res.Holds-1 || res.MaxRun > res.Holds-1 {
		t.Errorf("%d gaps, max run %d: impossible with %d holds", res.GapMS.N, res.MaxRun, res.Holds)
	}
	// Each hold takes one write and frees with another; reads and failed
	// conditions come on top, from processes that polled.
	q := res.RequestsPerHold
	if sum := q.Read + q.Write + q.PreconditionFailed + q.Error; math.Abs(sum-q.Total) > 0.01 || q.Write != 2 || q.Error != 0 {
		t.Errorf("requests per hold %+v: want 2 writes, no errors, the kinds summing to the total", q)
	}
	// After the first cycle an uncontended Lock+Unlock is two writes.
	u := res.Uncontended
	if u.Cycles != uncontendedCycles || u.RequestsPerCycle != (requests{Write: 2, Total: 2}) || u.CycleMS.N != u.Cycles || u.ReadMS <= 0 || u.WriteMS <= 0 || u.Limit <= 0 {
		t.Errorf("uncontended %+v", u)
	}
	if res.Cost.RenewEveryMS != millis(objsync.RenewInterval(10*time.Second).Nanoseconds()) || res.Cost.HandoffUSDPer1000 <= 0 {
		t.Errorf("cost %+v", res.Cost)
	}
	if !res.ScratchRemoved || res.Scratch != dsn+".bench-rtt" {
		t.Errorf("scratch %q, removed %v", res.Scratch, res.ScratchRemoved)
	}

	// Only the lock is left (and the file driver's own lock file), free,
	// its fence counting every hold bench made.
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{".objsync-flock", "lock"}) {
		t.Errorf("files left: %q; want the lock's only", names)
	}
	if st := status(t, dir); st.Held || st.Fence != int64(res.Checked) {
		t.Errorf("after bench the lock is %+v; want free with fence %d", st, res.Checked)
	}

	// Again, on the same lock, as a table.
	r = runCLI(t, dir, "bench", "--procs", "1", "--goroutines", "2", "--holds", "2", "--hold", "0s", "lock")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("bench: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{
		"lock           " + dsn + "\n",
		"\ncontenders     1 process × 2 goroutines, 2 holds each, hold 0s, ttl 10s\n",
		"\ncontended      4 holds in ",
		"\n  requests     2 per cycle: 0 read, 2 write, 0 failed precondition, 0 error\n",
		"\ncost           AWS S3 Standard us-east-1 list prices as of 2026-12-02;\n               your store's prices differ\n",
		"\n  held         1213 renewals/hour at ttl 10s (every 2.97s): $0.0061/hour\n",
		"\nexclusion      25 holds checked: no overlaps, fences increasing\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the table does not contain %q:\n%s", want, r.stdout)
		}
	}
}

func TestBenchRefusesHeldLock(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir, "--value", "in use")
	r := runCLI(t, dir, "bench", "--procs", "1", "lock")
	if r.code != exitFailed {
		t.Errorf("exit code %d, want %d", r.code, exitFailed)
	}
	line := oneLine(t, "stderr", r.stderr)
	if !strings.Contains(line, `is held by "in use" on host`) || !strings.Contains(line, "bench needs a lock that nothing else uses") {
		t.Errorf("stderr = %q; want it to say who holds the lock and why bench refuses", line)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
	if st := status(t, dir); !st.Held || st.Fence != 1 || st.PID != h.cmd.Process.Pid {
		t.Errorf("the lock is now %+v; want it untouched", st)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "bench: want one DSN, got 0 arguments"},
		{[]string{"a", "b"}, "bench: want one DSN, got 2 arguments"},
		{[]string{"l", "--", "x"}, "bench: unexpected arguments after --"},
		{[]string{"--bogus", "l"}, "bench: unknown flag: --bogus"},
		{[]string{"--procs", "0", "l"}, "bench: --procs and --goroutines must be at least 1"},
		{[]string{"--goroutines", "-1", "l"}, "bench: --procs and --goroutines must be at least 1"},
		{[]string{"--holds", "0", "l"}, "bench: --holds must be at least 1"},
		{[]string{"--holds", "3", "--duration", "1s", "l"}, "bench: --holds and --duration exclude each other"},
		{[]string{"--duration", "0s", "l"}, "bench: --duration must be positive"},
		{[]string{"--hold", "-1ms", "l"}, `bench: invalid argument "-1ms" for "--hold" flag: cannot be negative`},
		{[]string{"--ttl", "5ms", "l"}, "bench: --ttl: ttl 5ms is below the minimum 100ms"},
		{[]string{"foo://b/k"}, `unknown scheme "foo"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			r := runCLI(t, dir, append([]string{"bench"}, tt.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit code %d, want %d", r.code, exitUsage)
			}
			if line := oneLine(t, "stderr", r.stderr); !strings.Contains(line, tt.want) {
				t.Errorf("stderr %q does not contain %q", line, tt.want)
			}
			if entries, _ := os.ReadDir(dir); r.stdout != "" || len(entries) > 0 {
				t.Errorf("stdout %q, %d files made; want nothing", r.stdout, len(entries))
			}
		})
	}
}

func TestBenchHelp(t *testing.T) {
	r := runCLI(t, t.TempDir(), "bench", "--help")
	for _, want := range []string{"Usage: objsync bench [flags] DSN", "Example:\n  objsync bench ", "Flags:", "-driver name", "-procs N", "(default 8)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bench --help does not contain %q:\n%s", want, r.stdout)
		}
	}
	if r.code != 0 || r.stderr != "" {
		t.Errorf("bench --help: exit %d, stderr %q", r.code, r.stderr)
	}
}

// hold makes a record of process proc's hold of fence from acquired to
// released, in milliseconds, its Lock called at called.
func hold(proc int, fence, called, acquired, released int64) holdRecord {
	ms := int64(time.Millisecond)
	return holdRecord{Proc: proc, Fence: fence, Called: called * ms, Acquired: acquired * ms, Released: released * ms, Unlocked: released*ms + 1}
}

func TestCheckExclusion(t *testing.T) {
	tests := []struct {
		name  string
		holds []holdRecord
		want  []string // one substring per violation
	}{
		{"in turn", []holdRecord{hold(1, 2, 0, 10, 20), hold(0, 1, 0, 1, 9), hold(2, 3, 5, 21, 30)}, nil},
		{"overlap", []holdRecord{hold(0, 1, 0, 1, 10), hold(1, 2, 0, 10, 20), hold(0, 3, 11, 21, 30)}, []string{
			"two holders at once: fence 1 (process 0 goroutine 0) held from 0.001000s to 0.010000s, and fence 2 (process 1 goroutine 0) acquired at 0.010000s",
		}},
		// A long hold spans the next two: both overlap it.
		{"nested", []holdRecord{hold(0, 1, 0, 1, 50), hold(1, 2, 0, 10, 20), hold(2, 3, 0, 30, 40), hold(3, 4, 0, 60, 70)}, []string{
			"fence 1 (process 0 goroutine 0) held from 0.001000s to 0.050000s, and fence 2",
			"fence 1 (process 0 goroutine 0) held from 0.001000s to 0.050000s, and fence 3",
		}},
		{"fences out of order", []holdRecord{hold(0, 1, 0, 1, 9), hold(-1, 5, 0, 10, 19), hold(1, 4, 0, 20, 29), hold(2, 6, 0, 30, 39)}, []string{
			"fences out of order: fence 4 (process 1 goroutine 0) acquired at 0.020000s, after fence 5 (uncontended phase) at 0.010000s",
		}},
		{"fence repeated", []holdRecord{hold(0, 7, 0, 1, 9), hold(1, 7, 0, 10, 19)}, []string{"fences out of order: fence 7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkExclusion(tt.holds, 0)
			if len(got) != len(tt.want) {
				t.Fatalf("violations %q, want %d", got, len(tt.want))
			}
			for i, want := range tt.want {
				if !strings.Contains(got[i], want) {
					t.Errorf("violation %q does not contain %q", got[i], want)
				}
			}
		})
	}
}

func TestAnalyse(t *testing.T) {
	id := func(proc, _ int) int { return proc }
	ms := int64(time.Millisecond)
	// 0 holds three times in a row while 1 waits from 0 to 40; 2 waits
	// from 25, sees one hold of 0 and gets the lock. The lock is free,
	// unwanted, from 50 to 56. Then 2 waits from 60 to the end, 90, while
	// 0 holds again twice: a run of 2 before the wait, 1 within it.
	holds := []holdRecord{
		hold(0, 1, 0, 1, 10), hold(0, 2, 10, 12, 20), hold(0, 3, 20, 22, 30),
		hold(2, 4, 25, 31, 38), hold(1, 5, 0, 40, 50), hold(0, 6, 55, 56, 70), hold(0, 7, 70, 72, 80),
	}
	unfinished := []waitRecord{{Proc: 2, Called: 60 * ms, Ended: 90 * ms}}
	c := analyse(holds, unfinished, id)
	if c.maxRun != 3 {
		t.Errorf("max run %d, want 3", c.maxRun)
	}
	// Gaps while someone waited: 10→12, 20→22, 30→31, 38→40, and 70→72
	// (only 2's unfinished wait wanted it then); not 50→56.
	want := []int64{2 * ms, 2 * ms, 1 * ms, 2 * ms, 2 * ms}
	if !slices.Equal(c.gaps, want) {
		t.Errorf("gaps %v, want %v", c.gaps, want)
	}
	if c := analyse(holds[3:], unfinished, id); c.maxRun != 1 || len(c.gaps) != 2 {
		t.Errorf("without the run of 3: max run %d, gaps %v; want 1 and two gaps", c.maxRun, c.gaps)
	}
	if c := analyse(holds, nil, id); len(c.gaps) != 4 {
		t.Errorf("without the unfinished wait: gaps %v, want the first four", c.gaps)
	}
}

func TestSummarise(t *testing.T) {
	var ns []int64
	for i := 100; i >= 1; i-- {
		ns = append(ns, int64(i)*int64(time.Millisecond))
	}
	if got, want := summarise(ns), (latency{N: 100, P50: 50, P90: 90, P99: 99, Max: 100}); got != want {
		t.Errorf("summarise(1..100ms) = %+v, want %+v", got, want)
	}
	if got := summarise(nil); got != (latency{}) {
		t.Errorf("summarise(nil) = %+v, want zeros", got)
	}
}
