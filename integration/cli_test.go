package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objsync/objsync/internal/procid"
)

// cliRun is one run of the objsync command.
type cliRun struct {
	code           int
	stdout, stderr string
}

// runObjsync runs the objsync command in dir to its end.
func runObjsync(t *testing.T, dir string, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(objsyncBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cliRun{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// TestCLIOnMinIO: the ways objsync lock frees a dead holder's lock before
// its TTL, on MinIO: at once after kill -9 of a holder on this machine,
// with nothing of its command left running; and, with --store-clock, by
// the store's clock for a holder that ran elsewhere.
func TestCLIOnMinIO(t *testing.T) {
	srv := StartMinIO(t)
	host := strings.TrimPrefix(srv.Endpoint, "http://")
	dsn := func(key string) string {
		return fmt.Sprintf("minio://%s:%s@%s/%s/%s?secure=false&region=%s",
			url.PathEscape(srv.AccessKey), url.PathEscape(srv.SecretKey), host, srv.Bucket, key, srv.Region)
	}

	t.Run("KilledHolder", func(t *testing.T) {
		dir := t.TempDir()
		lock := dsn("killed")
		// Two processes that outlive the command and ignore SIGTERM, one
		// of them in a session of its own; their pids, and the command's.
		holder := exec.Command(objsyncBin, "lock", "--quiet", "--ttl", "1m", lock, "--", "sh", "-c", `trap "" TERM
			sleep 1000 & echo $! >> pids
			setsid sleep 1000 & echo $! >> pids
			echo $$ >> pids; exec sleep 1000`)
		holder.Dir = dir
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
		var pids []string
		for deadline := time.Now().Add(30 * time.Second); len(pids) < 3; time.Sleep(10 * time.Millisecond) {
			data, _ := os.ReadFile(filepath.Join(dir, "pids"))
			pids = strings.Fields(string(data))
			if time.Now().After(deadline) {
				t.Fatalf("the holder's command did not start within 30s: pids %q", pids)
			}
		}
		holder.Process.Kill()
		holder.Wait()
		// The next holder's command lists those still running: not zombies.
		check := `for p in ` + strings.Join(pids, " ") + `; do s=$(cut -d')' -f2 /proc/$p/stat 2>/dev/null | cut -d' ' -f2)
			[ -n "$s" ] && [ "$s" != Z ] && echo $p; done > alive; echo $OBJSYNC_FENCE > fence`
		start := time.Now()
		r := runObjsync(t, dir, "lock", "--try", "--ttl", "1m", lock, "--", "sh", "-c", check)
		if r.code != 0 {
			t.Fatalf("lock --try right after kill -9 of the holder: exit %d, %s (this needs a cgroup v2 that objsync may write to: run as root)", r.code, r.stderr)
		}
		t.Logf("lock --try took the lock of the killed holder in %v", time.Since(start))
		if fence, _ := os.ReadFile(filepath.Join(dir, "fence")); string(fence) != "2\n" {
			t.Errorf("lock --try ran with fence %q, want 2", fence)
		}
		if alive, _ := os.ReadFile(filepath.Join(dir, "alive")); len(alive) != 0 {
			t.Errorf("processes of the killed holder's command still ran when the lock was taken over: %q", alive)
		}
		for _, p := range pids {
			var pid int
			fmt.Sscan(p, &pid)
			syscall.Kill(pid, syscall.SIGKILL) // should the test have failed
		}
	})

	t.Run("KilledHolderInOtherPIDNamespace", func(t *testing.T) {
		// As in another container of this machine: its pids mean other
		// processes here, so its death is never judged; the TTL frees it.
		dir := t.TempDir()
		lock := dsn("other-namespace")
		holder := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
			objsyncBin, "lock", "--quiet", "--ttl", "1m", lock, "--", "sh", "-c", "touch ready; exec sleep 1000")
		holder.Dir = dir
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the holder's command did not start within 30s")
			}
		}
		holder.Process.Kill() // unshare, and with it its namespace
		holder.Wait()
		// Its guardian died with the namespace, perhaps before it removed
		// the cgroup it made: remove it, if it is still there.
		out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("other-namespace")})
		if err != nil {
			t.Fatal(err)
		}
		var obj struct{ Process struct{ Cgroup string } }
		err = json.NewDecoder(out.Body).Decode(&obj)
		out.Body.Close()
		own, oerr := procid.OwnCgroup()
		if err != nil || oerr != nil || !strings.HasPrefix(obj.Process.Cgroup, "/") {
			t.Fatalf("the lock records no cgroup: %+v, %v, %v", obj, err, oerr)
		}
		// objsync made it below its own cgroup, which is this process's.
		cg := filepath.Join(own, filepath.Base(obj.Process.Cgroup))
		t.Cleanup(func() {
			if err := os.Remove(cg); err != nil && !os.IsNotExist(err) {
				t.Errorf("removing the cgroup of the killed holder: %v", err)
			}
		})
		if r := runObjsync(t, dir, "lock", "--try", lock, "--", "true"); r.code != 124 {
			t.Fatalf("lock --try over a holder killed in another pid namespace: exit %d, %s", r.code, r.stderr)
		}
	})

	t.Run("StoreClock", func(t *testing.T) {
		dir := t.TempDir()
		const ttl = 2 * time.Second
		lock := dsn("store-clock")
		// A holder that ran elsewhere and died: nothing here can tell it
		// has ended, but the store's clock says since when it is silent.
		obj := fmt.Sprintf(`{"objsync_lock":1,"state":"held","holder":"elsewhere","fence":7,"seq":1,"ttl_ms":%d,"host":"another-host","pid":1,"acquired_at":"2026-01-01T00:00:00Z","written_at":"2026-01-01T00:00:00Z"}`, ttl.Milliseconds())
		sent := time.Now()
		_, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(srv.Bucket), Key: aws.String("store-clock"), Body: strings.NewReader(obj),
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := runObjsync(t, dir, "lock", "--try", "--store-clock", lock, "--", "true"); r.code != 124 {
			t.Fatalf("lock --try --store-clock on a fresh holder: exit %d, %s", r.code, r.stderr)
		}
		for {
			r := runObjsync(t, dir, "lock", "--try", "--store-clock", lock, "--", "sh", "-c", "echo $OBJSYNC_FENCE > fence")
			since := time.Since(sent)
			switch {
			case r.code == 0 && since < ttl+ttl/100:
				t.Fatalf("lock --try --store-clock took over %v after the holder's write was sent, before its ttl and 1%%", since)
			case r.code == 0:
				t.Logf("lock --try --store-clock took over the lock of a holder that ran elsewhere %v after its last write (ttl %v)", since, ttl)
				if fence, _ := os.ReadFile(filepath.Join(dir, "fence")); string(fence) != "8\n" {
					t.Errorf("lock --try --store-clock ran with fence %q, want 8", fence)
				}
				return
			case r.code != 124:
				t.Fatalf("lock --try --store-clock: exit %d, %s", r.code, r.stderr)
			case since > ttl+10*time.Second:
				t.Fatalf("lock --try --store-clock still fails %v after the holder's last write: %s", since, r.stderr)
			}
			// Without --store-clock, only watching for the ttl frees it.
			if r := runObjsync(t, dir, "lock", "--try", lock, "--", "true"); r.code != 124 {
				t.Fatalf("lock --try without --store-clock: exit %d, %s", r.code, r.stderr)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}
