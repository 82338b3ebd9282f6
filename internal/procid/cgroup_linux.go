package procid

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// mount is a line of /proc/self/mountinfo.
type mount struct {
	id    uint64
	point string
}

// cgroupMounts returns the mounts of this process's mount namespace that
// show the cgroup v2 hierarchy from its root (the root of this process's
// cgroup namespace), in mountinfo's order.
func cgroupMounts() []mount {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []mount
	for line := range strings.Lines(string(data)) {
		// "36 35 98:0 ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ..."
		pre, post, ok := strings.Cut(line, " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(fs) < 1 || fs[0] != "cgroup2" || fields[3] != "/" {
			continue
		}
		if id, err := strconv.ParseUint(fields[0], 10, 64); err == nil {
			ms = append(ms, mount{id, unescapeMount(fields[4])})
		}
	}
	return ms
}

// mountOf returns the id of the mount that path is on, as mountinfo
// numbers them (statx STATX_MNT_ID, Linux 5.8), without following a last
// symbolic link.
func mountOf(path string) (mountID, ino uint64, err error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_INO, &stx); err != nil {
		return 0, 0, err
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, 0, errors.New("statx gives no mount id")
	}
	return stx.Mnt_id, stx.Ino, nil
}

// visibleCgroupMount returns a mount of the cgroup v2 hierarchy from its
// root that is the one its mount point shows now: nothing mounted over it,
// whatever order mountinfo lists the mounts in.
func visibleCgroupMount() (mount, bool) {
	for _, m := range cgroupMounts() {
		if id, _, err := mountOf(m.point); err == nil && id == m.id {
			return m, true
		}
	}
	return mount{}, false
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// cgroupMount is where the hierarchy is mounted: /sys/fs/cgroup on most
// systems, /sys/fs/cgroup/unified on hybrid ones; "" if nowhere.
var cgroupMount = sync.OnceValue(func() string {
	m, _ := visibleCgroupMount()
	return m.point
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
// namespace, whose id was id, has no process left in it or below it: its
// cgroup.events says "populated 0", or it is gone (only an empty cgroup can
// be removed): its path is missing, or holds another cgroup. Each of these
// is judged only on the hierarchy's mount itself (by mount id): another
// file system mounted over the path, or over a directory on the way, could
// hide the cgroup.
func cgroupEmpty(rel string, id uint64) bool {
	m, ok := visibleCgroupMount()
	if !ok || !validCgroup(rel) {
		return false
	}
	dir := filepath.Join(m.point, rel)
	mnt, ino, err := mountOf(dir)
	switch {
	case errors.Is(err, syscall.ENOENT):
		// Gone, if the deepest directory on the way that exists is of
		// the hierarchy's mount: the rest is missing there.
		for up := filepath.Dir(dir); within(up, m.point); up = filepath.Dir(up) {
			mnt, _, err := mountOf(up)
			if !errors.Is(err, syscall.ENOENT) {
				return err == nil && mnt == m.id && isCgroup2(up)
			}
			if up == m.point {
				break
			}
		}
		return false
	case err != nil || mnt != m.id || !isCgroup2(dir):
		return false
	case ino != id:
		return true
	}
	populated, err := CgroupPopulated(dir)
	return err == nil && !populated
}

// isCgroup2 reports whether path is on a cgroup v2 file system.
func isCgroup2(path string) bool {
	var fs syscall.Statfs_t
	return syscall.Statfs(path, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC
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

// hierarchy returns where the cgroup v2 hierarchy of this process's
// cgroup namespace is mounted.
func hierarchy() (string, error) {
	root := cgroupMount()
	if root == "" || cgroupNS() == "" {
		return "", errors.New("no cgroup v2 hierarchy is mounted here")
	}
	return root, nil
}

// CgroupPath returns the path of the cgroup v2 directory dir relative to
// the hierarchy's root, and its id, as Ended takes them in an ID.
func CgroupPath(dir string) (string, uint64, error) {
	root, err := hierarchy()
	if err != nil {
		return "", 0, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", 0, err
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", 0, fmt.Errorf("%s is not under the cgroup v2 hierarchy at %s", dir, root)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(abs, &st); err != nil || !isCgroup2(abs) {
		return "", 0, fmt.Errorf("%s is not a cgroup v2 directory (%v)", dir, err)
	}
	return filepath.Clean("/" + rel), st.Ino, nil
}

// OwnCgroup returns the directory of this process's cgroup v2.
func OwnCgroup() (string, error) {
	root, err := hierarchy()
	if err != nil {
		return "", err
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
	return filepath.Join(root, own), nil
}

// NewCgroup creates a cgroup below this process's own, named prefix and a
// random suffix, and returns its directory. It fails where the hierarchy
// is not mounted or this process may not create cgroups there (no root,
// and no delegation from the service manager).
func NewCgroup(prefix string) (string, error) {
	own, err := OwnCgroup()
	if err != nil {
		return "", err
	}
	var suffix [8]byte
	rand.Read(suffix[:])
	dir := filepath.Join(own, prefix+hex.EncodeToString(suffix[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("cgroup.kill (Linux 5.14) is missing: %w", err)
	}
	// Below a threaded cgroup, a new one takes no process.
	if typ, err := os.ReadFile(filepath.Join(dir, "cgroup.type")); err != nil || strings.TrimSpace(string(typ)) != "domain" {
		os.Remove(dir)
		return "", fmt.Errorf("%s is of type %q, not a domain that takes processes (%v)", dir, strings.TrimSpace(string(typ)), err)
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
