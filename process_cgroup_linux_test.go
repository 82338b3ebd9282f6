package objsync_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/procid"
)

// startInCgroup starts a command in the cgroup v2 at dir.
func startInCgroup(dir string, name string, args ...string) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd.Start()
}

// TestHolderEndedCgroup: a holder whose work runs in a cgroup (WithCgroup)
// counts as ended only once the cgroup is empty too.
func TestHolderEndedCgroup(t *testing.T) {
	cg, err := procid.NewCgroup("objsync-test-")
	if err != nil {
		t.Fatalf("cannot create a cgroup (run the tests as root on Linux 5.14 or later, with a writable cgroup v2 hierarchy): %v", err)
	}
	t.Cleanup(func() {
		procid.KillCgroup(cg)
		for deadline := time.Now().Add(5 * time.Second); os.Remove(cg) != nil; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("cannot remove %s", cg)
				return
			}
		}
	})
	t.Setenv("OBJSYNC_TEST_CGROUP", cg)
	lock := t.TempDir() + "/lock"
	holder, fence := startHolder(t, "hold-cgroup", lock)
	holder.Process.Kill()
	holder.Wait()
	m := holdsOn(t, lock) // the cgroup's sleep runs on
	if err := procid.KillCgroup(cg); err != nil {
		t.Fatal(err)
	}
	takesOver(t, m, fence, "the holder's cgroup was killed")
}

// TestWithCgroupRefused: WithCgroup takes only a cgroup v2 directory.
func TestWithCgroupRefused(t *testing.T) {
	for _, dir := range []string{t.TempDir(), "/nonexistent/cgroup", ""} {
		_, err := objsync.Open("file", t.TempDir()+"/lock", objsync.WithCgroup(dir))
		if err == nil {
			t.Errorf("WithCgroup(%q): %v; want it refused", dir, err)
		}
	}
}

// TestWithCgroupRecreated (found by review): a cgroup removed and made
// again at the same path after NewMutex is recorded as it is at Lock, by
// its new id, so that contenders judge the work that runs in it.
func TestWithCgroupRecreated(t *testing.T) {
	cg, err := procid.NewCgroup("objsync-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		procid.KillCgroup(cg)
		for deadline := time.Now().Add(5 * time.Second); os.Remove(cg) != nil && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		}
	})
	lock := t.TempDir() + "/lock"
	m, err := objsync.Open("file", lock, objsync.WithCgroup(cg))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := os.Remove(cg); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock(context.Background(), time.Minute); err == nil || !strings.Contains(err.Error(), "WithCgroup") {
		t.Fatalf("Lock with the cgroup removed: %v; want it refused", err)
	}
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	_, id, err := procid.CgroupPath(cg)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := driver.Lookup("file")
	store, key, _ := d.Open(lock)
	data, _, err := store.Read(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		Process struct {
			CgroupID uint64 `json:"cgroup_id"`
		}
	}
	if err := json.Unmarshal(data, &obj); err != nil || obj.Process.CgroupID != id {
		t.Fatalf("the lock records cgroup id %d (%v), want the cgroup's at Lock, %d", obj.Process.CgroupID, err, id)
	}
}
