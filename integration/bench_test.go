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
// contenders in separate processes and in one process, and logs the
// figures of both (the table of issue 12). It checks what must hold
// whatever the machine's speed: every hold done, no two holders, an
// uncontended cycle of two requests, the scratch object removed.
func TestBenchOnMinIO(t *testing.T) {
	srv := StartMinIO(t)
	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+srv.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true")
	for _, tc := range []struct {
		name              string
		procs, goroutines int
	}{
		{"8 processes", 8, 1},
		{"8 goroutines of one process", 1, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := fmt.Sprintf("s3://%s/bench/%d-%d?endpoint=%s&region=%s", srv.Bucket, tc.procs, tc.goroutines, url.QueryEscape(srv.Endpoint), srv.Region)
			cmd := exec.Command(objsyncBin, "bench", "--json", "--procs", fmt.Sprint(tc.procs), "--goroutines", fmt.Sprint(tc.goroutines),
				"--holds", "10", "--hold", "5ms", dsn)
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
			t.Logf("| %s | %.1f | %.2f | %.0f ms | %.0f ms | %.0f ms | gap p99 %.0f ms | max run %d |",
				tc.name, f.HoldsPerSecond, f.RequestsPerHold.Total, f.WaitMS.P50, f.WaitMS.P99, f.WaitMS.Max, f.GapMS.P99, f.MaxRun)
			t.Logf("uncontended: cycle p50 %.1f ms, %v requests, write %.1f ms", f.Uncontended.CycleMS.P50, f.Uncontended.RequestsPerCycle.Total, f.Uncontended.WriteMS)
			if want := tc.procs * tc.goroutines * 10; f.Holds != want {
				t.Errorf("holds = %d, want %d", f.Holds, want)
			}
			if f.Violations != 0 {
				t.Errorf("bench saw %d violations", f.Violations)
			}
			if f.Uncontended.RequestsPerCycle.Total != 2 {
				t.Errorf("an uncontended Lock+Unlock took %v requests, want 2", f.Uncontended.RequestsPerCycle.Total)
			}
			if !f.ScratchRemoved {
				t.Error("the scratch object was not removed")
			}
		})
	}
}
