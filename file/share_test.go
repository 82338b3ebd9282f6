//go:build linux

package file_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
)

// TestEmptyFileIsAbsent: an empty file at the lock path (touch, flock(1))
// is an absent object, and creating the object over it is still atomic:
// of several processes that try, exactly one succeeds.
func TestEmptyFileIsAbsent(t *testing.T) {
	path := t.TempDir() + "/lock"
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, key := mustOpen(t, path)
	if _, _, err := s.Read(context.Background(), key); !errors.Is(err, driver.ErrNotExist) {
		t.Fatalf("Read of an empty file: %v, want ErrNotExist", err)
	}
	const processes = 6
	var cmds []*exec.Cmd
	for range processes {
		cmd := helper(t, "create", path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	created := 0
	for _, cmd := range cmds {
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
			created++
		case errors.As(err, &exit) && exit.ExitCode() == preconditionExit:
		default:
			t.Fatalf("helper: %v", err)
		}
	}
	if created != 1 {
		t.Fatalf("%d processes created the object over the empty file, want 1", created)
	}
	if data, _, err := s.Read(context.Background(), key); err != nil || string(data) != "x" {
		t.Fatalf("Read = %q, %v", data, err)
	}
}

// TestSymlinkFollowed: a symbolic link at the lock path is followed, as
// flock(1) does: the link and its target are one object, and the link
// stays a link.
func TestSymlinkFollowed(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	link, target := a+"/lock", b+"/real.lock"
	if err := os.Symlink(target, link); err != nil { // dangling until written
		t.Fatal(err)
	}
	viaLink, lk := mustOpen(t, link)
	viaTarget, tk := mustOpen(t, target)
	ctx := context.Background()
	v1, err := viaLink.Write(ctx, lk, []byte("one"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := viaTarget.Write(ctx, tk, []byte("x"), ""); !errors.Is(err, driver.ErrPrecondition) {
		t.Fatalf("create-only through the target after one through the link: %v", err)
	}
	v2, err := viaTarget.Write(ctx, tk, []byte("two"), v1)
	if err != nil {
		t.Fatalf("replace through the target with the link's version: %v", err)
	}
	if data, v, err := viaLink.Read(ctx, lk); err != nil || string(data) != "two" || v != v2 {
		t.Fatalf("Read through the link = %q, %q, %v", data, v, err)
	}
	if _, err := viaLink.Write(ctx, lk, []byte("stale"), v1); !errors.Is(err, driver.ErrPrecondition) {
		t.Fatalf("stale write through the link: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v, %v", fi.Mode(), err)
	}
}

// Two unprivileged users (no account is needed for a uid) and root.
const userA, userB = 65534, 65533

// asUser returns a helper process running role as uid, from a copy of the
// test binary that any user may run, in a directory any user may reach.
func asUser(t *testing.T, bin string, uid int, role, dsn string) *exec.Cmd {
	cmd := helper(t, role, dsn)
	cmd.Path, cmd.Stderr = bin, nil // CombinedOutput collects it
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}

// sharedDir makes a sticky, world-writable directory like /tmp and
// /run/lock, and a copy of the test binary beside it that every user may
// run.
func sharedDir(t *testing.T) (dir, bin string) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: it runs helpers as other users, which needs root (CI runs as root)")
	}
	parent := t.TempDir()
	for d := parent; d != "/"; d = filepath.Dir(d) {
		if d == os.TempDir() {
			break
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir, bin = parent+"/shared", parent+"/helper"
	data, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.WriteFile(bin, data, 0o755)
	}
	if err == nil {
		err = os.Mkdir(dir, 0o777)
	}
	if err == nil {
		err = os.Chmod(dir, 0o777|os.ModeSticky)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// TestUsersShareALock: root and two users update one object in a sticky
// directory with compare-and-swap, root having created it: no update is
// lost. Then one user's writer is killed mid-write again and again; the
// other user always finds the object whole and can write it.
func TestUsersShareALock(t *testing.T) {
	dir, bin := sharedDir(t)
	path := dir + "/counter"
	s, key := mustOpen(t, path)
	if _, err := s.Write(context.Background(), key, []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	root := helper(t, "increment", path)
	root.Stderr = nil
	for _, cmd := range []*exec.Cmd{
		root,
		asUser(t, bin, userA, "increment", path),
		asUser(t, bin, userB, "increment", path),
	} {
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%v: %s", err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a helper failed: %v", err)
	}
	data, _, err := s.Read(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), strconv.Itoa(3*incrementsPerProcess); got != want {
		t.Fatalf("counter = %s, want %s", got, want)
	}

	big := dir + "/big"
	if out, err := asUser(t, bin, userA, "create-big", big).CombinedOutput(); err != nil {
		t.Fatalf("user A creating the object: %v: %s", err, out)
	}
	for i := range 10 {
		writer := asUser(t, bin, userB, "rewrite", big)
		if err := writer.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+i*7) * time.Millisecond)
		writer.Process.Kill()
		writer.Wait()
		if out, err := asUser(t, bin, userA, "check-and-write", big).CombinedOutput(); err != nil {
			t.Fatalf("after killing user B's writer %d times, user A: %v: %s", i+1, err, out)
		}
	}
}
