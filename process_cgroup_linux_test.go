package objsync_test

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync"
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
