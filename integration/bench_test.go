package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"testing"
)

// benchFigures is the part of objsync bench --json that the test reads.
type benchFigures struct {
	Holds           int                             `json:"holds"`
	HoldsPerSecond  float64                         `json:"holds_per_second"`
	WaitMS          struct{ P50, P99, Max float64 } `json:"wait_ms"`
	GapMS           struct{ P50, P99 float64 }      `json:"gap_ms"`
	RequestsPerHold struct {
		Read, Write, Error, Total float64
		PreconditionFailed        float64 `json:"precondition_failed"`
	} `json:"requests_per_hold"`
	MaxRun      int `json:"max_run"`
	Uncontended struct {
		RequestsPerCycle struct{ Total float64 } `json:"requests_per_cycle"`
		CycleMS          struct{ P50 float64 }   `json:"cycle_ms"`
		WriteMS          float64                 `json:"write_ms"`
	}
	Violations     int  `json:"violations"`
	ScratchRemoved bool `json:"scratch_removed"`
}

// TestBenchOnMinIO runs objsync bench as a user would, on MinIO, with
// contenders in separate processes and in one process, on a plain lock and
// on a queue lock, and logs the figures of each (the tables of issues 12
// and 13). It checks what must hold whatever the machine's speed: every
// hold done, no two holders, an uncontended cycle of two requests (a queue
// lock: five), the scratch object removed.
//
// OBJSYNC_BENCH_BASELINE, the path of another objsync binary (built from
// an older commit, say), has each case run with it too, in turn with this
// one, so that the two are compared in one run on one server.
func TestBenchOnMinIO(t *testing.T) {
	srv := StartMinIO(t)
	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+srv.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true")
	bins := []struct{ name, path string }{{"this", objsyncBin}}
	if base := os.Getenv("OBJSYNC_BENCH_BASELINE"); base != "" {
		bins = append([]struct{ name, path string }{{"baseline", base}}, bins...)
	}
	for _, tc := range []struct {
		name              string
		procs, goroutines int
	}{
		{"8 processes", 8, 1},
		{"8 goroutines of one process", 1, 8},
	} {
		for _, queue := range []bool{false, true} {
			t.Run(tc.name+"/"+lockKind(queue), func(t *testing.T) {
				benchCase(t, bins, env, srv, tc.procs, tc.goroutines, queue)
			})
		}
	}
}

// benchCase runs one case of TestBenchOnMinIO with each binary.
func benchCase(t *testing.T, bins []struct{ name, path string }, env []string, srv S3Server, procs, goroutines int, queue bool) {
	wantUncontended := 2.0
	if queue {
		wantUncontended = 3
	}
	for _, bin := range bins {
		dsn := fmt.Sprintf("s3://%s/bench/%s-%d-%d-%s?endpoint=%s&region=%s", srv.Bucket, bin.name, procs, goroutines, lockKind(queue), url.QueryEscape(srv.Endpoint), srv.Region)
		f := runBench(t, bin.path, env, dsn, procs, goroutines, queue)
		t.Logf("%s: | %d×%d %s | %.1f | %.2f (%.2f read, %.2f write, %.2f failed precondition) | %.0f ms | %.0f ms | %.0f ms | gap p99 %.0f ms | max run %d |",
			bin.name, procs, goroutines, lockKind(queue), f.HoldsPerSecond, f.RequestsPerHold.Total, f.RequestsPerHold.Read, f.RequestsPerHold.Write, f.RequestsPerHold.PreconditionFailed,
			f.WaitMS.P50, f.WaitMS.P99, f.WaitMS.Max, f.GapMS.P99, f.MaxRun)
		t.Logf("%s: uncontended: cycle p50 %.1f ms, %v requests, write %.1f ms", bin.name, f.Uncontended.CycleMS.P50, f.Uncontended.RequestsPerCycle.Total, f.Uncontended.WriteMS)
		if want := procs * goroutines * 10; f.Holds != want {
			t.Errorf("%s: holds = %d, want %d", bin.name, f.Holds, want)
		}
		if f.Violations != 0 {
			t.Errorf("%s: bench saw %d violations", bin.name, f.Violations)
		}
		if f.Uncontended.RequestsPerCycle.Total != wantUncontended {
			t.Errorf("%s: an uncontended Lock+Unlock took %v requests, want %v", bin.name, f.Uncontended.RequestsPerCycle.Total, wantUncontended)
		}
		if !f.ScratchRemoved {
			t.Errorf("%s: the scratch object was not removed", bin.name)
		}
	}
}

// runBench runs bin's objsync bench with --json on dsn, 10 holds of 5ms
// per contender, on a plain or a queue lock, and returns its figures.
func runBench(t *testing.T, bin string, env []string, dsn string, procs, goroutines int, queue bool) benchFigures {
	t.Helper()
	args := []string{"bench", "--json", "--procs", fmt.Sprint(procs), "--goroutines", fmt.Sprint(goroutines), "--holds", "10", "--hold", "5ms"}
	if queue {
		args = append(args, "--queue") // only then: a baseline may not know it
	}
	cmd := exec.Command(bin, append(args, dsn)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if e, ok := err.(*exec.ExitError); ok {
			stderr = e.Stderr
		}
		t.Fatalf("objsync bench: %v\n%s", err, stderr)
	}
	var f benchFigures
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	return f
}
