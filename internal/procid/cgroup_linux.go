package procid

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// cgroupMount is where the cgroup v2 hierarchy is mounted with its root
// (the root of this process's cgroup namespace) at the mount's root, or ""
// if it is not: /sys/fs/cgroup on most systems, /sys/fs/cgroup/unified on
// hybrid ones.
var cgroupMount = sync.OnceValue(func() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// "36 35 98:0 ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ..."
		pre, post, ok := strings.Cut(s.Text(), " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(fs) >= 1 && fs[0] == "cgroup2" && fields[3] == "/" {
			return unescapeMount(fields[4])
		}
	}
	return ""
})

// unescapeMount undoes the octal escapes of mountinfo (\040 for a space).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

var cgroupNS = sync.OnceValue(func() string {
	ns, _ := os.Readlink("/proc/self/ns/cgroup") // none before Linux 4.6
	return ns
})

// cgroupEmpty reports whether the cgroup rel, of this process's cgroup
// namespace, has no process left in it or below it: its cgroup.events
// says "populated 0", or it is gone (only an empty cgroup can be
// removed).
func cgroupEmpty(rel string) bool {
	mount := cgroupMount()
	if mount == "" || !validCgroup(rel) {
		return false
	}
	if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
		return false // not the hierarchy it was: not sure
	}
	data, err := os.ReadFile(filepath.Join(mount, rel, "cgroup.events"))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Lstat(filepath.Join(mount, rel)); errors.Is(err, os.ErrNotExist) {
			return true
		}
		return false
	}
	return err == nil && populated(data) == "0"
}

// populated returns the value of the populated key of cgroup.events.
func populated(events []byte) string {
	for line := range bytes.Lines(events) {
		if v, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("populated ")); ok {
			return string(v)
		}
	}
	return ""
}

// CgroupPath returns the path of the cgroup v2 directory dir relative to
// the hierarchy's root, as Ended takes it in an ID.
func CgroupPath(dir string) (string, error) {
	mount := cgroupMount()
	if mount == "" || cgroupNS() == "" {
		return "", errors.New("no cgroup v2 hierarchy is mounted here")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(mount, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s is not under the cgroup v2 hierarchy at %s", dir, mount)
	}
	if _, err := os.Stat(filepath.Join(abs, "cgroup.events")); err != nil {
		return "", fmt.Errorf("%s is not a cgroup v2 directory: %w", dir, err)
	}
	return filepath.Clean("/" + rel), nil
}

// NewCgroup creates a cgroup below this process's own, named prefix and a
// random suffix, and returns its directory. It fails where the hierarchy
// is not mounted or this process may not create cgroups there (no root,
// and no delegation from the service manager).
func NewCgroup(prefix string) (string, error) {
	mount := cgroupMount()
	if mount == "" || cgroupNS() == "" {
		return "", errors.New("no cgroup v2 hierarchy is mounted here")
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	own := ""
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			own = rest
		}
	}
	if !validCgroup(own) {
		return "", fmt.Errorf("no cgroup v2 path in /proc/self/cgroup: %q", data)
	}
	var suffix [8]byte
	rand.Read(suffix[:])
	dir := filepath.Join(mount, own, prefix+hex.EncodeToString(suffix[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("cgroup.kill (Linux 5.14) is missing: %w", err)
	}
	return dir, nil
}

// KillCgroup sends SIGKILL to every process in the cgroup at dir and
// below it.
func KillCgroup(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
}

// CgroupPopulated reports whether a process is left in the cgroup at dir
// or below it.
func CgroupPopulated(dir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	switch populated(data) {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated key", dir)
}
