//go:build unix

package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/objsync/objsync"
	_ "github.com/objsync/objsync/file"
)

// A lock in a local directory, shared by the processes of one host. The
// DSN is a path (or file:///ABSOLUTE/PATH); its directory must exist.
func Example() {
	dir, err := os.MkdirTemp("", "objsync-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	mu, err := objsync.Open("file", filepath.Join(dir, "deploy.lock"), objsync.WithValue("deploy #1234"))
	if err != nil {
		panic(err)
	}
	defer mu.Close()

	fence, err := mu.Lock(ctx, 10*time.Second)
	if err != nil {
		panic(err)
	}
	// Pass the fence with every write the lock protects, and have the
	// resource refuse a fence lower than the highest it has seen.
	fmt.Println("holding, fence", fence)

	// Another Mutex on the same file (here in this process; as well in
	// another) cannot take it while it is held.
	other, err := objsync.Open("file", "file://"+filepath.Join(dir, "deploy.lock"))
	if err != nil {
		panic(err)
	}
	defer other.Close()
	ok, _, err := other.TryLock(ctx, 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("the other Mutex got it:", ok)

	st, err := other.Inspect(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("stored: held %v, value %q, fence %d, ttl %v\n", st.Held, st.Value, st.Fence, st.TTL)

	if err := mu.Unlock(ctx); err != nil {
		panic(err)
	}
	ok, fence, err = other.TryLock(ctx, 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("after Unlock, the other Mutex got it:", ok, "fence", fence)
	if err := other.Unlock(ctx); err != nil {
		panic(err)
	}
	// Output:
	// holding, fence 1
	// the other Mutex got it: false
	// stored: held true, value "deploy #1234", fence 1, ttl 10s
	// after Unlock, the other Mutex got it: true fence 2
}
