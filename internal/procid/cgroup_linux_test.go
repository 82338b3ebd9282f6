package procid

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// sleepIn starts sleep(1) in the cgroup at dir.
func sleepIn(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestCgroup: a process whose work runs in a cgroup has ended only once
// the cgroup is empty too, and only in the same cgroup namespace.
func TestCgroup(t *testing.T) {
	dir, err := NewCgroup("objsync-test-")
	if err != nil {
		t.Fatalf("cannot create a cgroup (run the tests as root on Linux 5.14 or later, with a writable cgroup v2 hierarchy): %v", err)
	}
	defer os.Remove(dir)
	rel, cid, err := CgroupPath(dir)
	if err != nil || filepath.Join(cgroupMount(), rel) != dir || cid == 0 {
		t.Fatalf("CgroupPath(%s) = %q, %d, %v", dir, rel, cid, err)
	}
	if _, _, err := CgroupPath(t.TempDir()); err == nil {
		t.Error("CgroupPath of a directory outside the hierarchy: no error")
	}
	work := sleepIn(t, dir)
	if populated, err := CgroupPopulated(dir); !populated || err != nil {
		t.Fatalf("CgroupPopulated with a sleep(1) in it: %v, %v", populated, err)
	}

	cmd, id := child(t)
	id.Cgroup, id.CgroupNS, id.CgroupID = rel, Self().CgroupNS, cid
	cmd.Process.Kill()
	cmd.Wait()
	unknown := map[string]ID{}
	for name, change := range map[string]func(*ID){
		"another cgroup namespace": func(o *ID) { o.CgroupNS = "cgroup:[1]" },
		"no cgroup namespace":      func(o *ID) { o.CgroupNS = "" },
		"a path out of the tree":   func(o *ID) { o.Cgroup = "/../" + rel },
		"a relative path":          func(o *ID) { o.Cgroup = rel[1:] },
		"no cgroup id":             func(o *ID) { o.CgroupID = 0 },
	} {
		other := id
		change(&other)
		unknown[name] = other
	}
	if Ended(id) {
		t.Fatal("judged ended with a process left in its cgroup")
	}
	// Judged from a mount namespace where something hides the hierarchy,
	// or the cgroup: never gone, although its cgroup.events is missing.
	sub, full := t.TempDir(), t.TempDir()
	for name, mount := range map[string]string{
		"a tmpfs over the hierarchy": "mount -t tmpfs none " + cgroupMount(),
		"cgroup v1 over it":          "mount -t cgroup -o none,name=procidtest cgroup " + cgroupMount(),
		"a tmpfs over the cgroup":    "mount -t tmpfs none " + dir,
		// A cgroup2 bind of a subtree moved over a cgroup2 mount: listed
		// first in mountinfo, yet on top.
		"a subtree moved over the hierarchy": fmt.Sprintf("mount --bind %s %s && mount -t cgroup2 none %s && mount --move %s %s && umount -l %s",
			dir, sub, full, sub, full, cgroupMount()),
	} {
		if _, ended := judgeIn(t, id, "--mount", "--propagation", "private", "sh", "-c", mount+` && exec "$0"`); ended {
			t.Errorf("with %s: judged ended with a process left in its cgroup", name)
		}
	}
	if err := KillCgroup(dir); err != nil {
		t.Fatal(err)
	}
	work.Wait()
	for deadline := time.Now().Add(5 * time.Second); !Ended(id); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not judged ended 5s after its cgroup was killed")
		}
	}
	for name, other := range unknown {
		if Ended(other) {
			t.Errorf("%s: judged ended", name)
		}
	}
	// A cgroup that is gone was empty.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if !Ended(id) {
		t.Fatal("not judged ended once its cgroup was removed")
	}
	// Another cgroup at its path, with a process in it: its own is gone.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	other := sleepIn(t, dir)
	if !Ended(id) {
		t.Error("not judged ended with another cgroup at its path")
	}
	other.Process.Kill()
	other.Wait()
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/sys/fs/cgroup`:          "/sys/fs/cgroup",
		`/mnt/a\040b`:             "/mnt/a b",
		`/mnt/tab\011and\134back`: "/mnt/tab\tand\\back",
		`/mnt/short\04`:           `/mnt/short\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
