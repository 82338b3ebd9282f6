package objsync_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/objsync/objsync"
	_ "github.com/objsync/objsync/mem"
)

func Example() {
	ctx := context.Background()
	mu, err := objsync.Open("mem", "mem://example/locks/nightly-report")
	if err != nil {
		panic(err)
	}
	defer mu.Close()

	fence, err := mu.Lock(ctx, 15*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("holding the lock with fence", fence)
	// Do the work, passing fence along with every write it makes.
	if err := mu.Unlock(ctx); err != nil {
		panic(err)
	}
	// Output: holding the lock with fence 1
}

func ExampleMutex_TryLock() {
	ctx := context.Background()
	a, _ := objsync.Open("mem", "mem://example/locks/try")
	b, _ := objsync.Open("mem", "mem://example/locks/try")
	defer a.Close()
	defer b.Close()

	ok, fence, _ := a.TryLock(ctx, time.Minute)
	fmt.Println("a:", ok, fence)
	ok, _, _ = b.TryLock(ctx, time.Minute)
	fmt.Println("b while a holds it:", ok)
	_ = a.Unlock(ctx)
	ok, fence, _ = b.TryLock(ctx, time.Minute)
	fmt.Println("b after a let go:", ok, fence)
	_ = b.Unlock(ctx)
	// Output:
	// a: true 1
	// b while a holds it: false
	// b after a let go: true 2
}

// Work done under a lock should stop when the lock is lost. Done is closed
// when the hold ends, and Err says why.
func ExampleMutex_Done() {
	ctx := context.Background()
	mu, _ := objsync.Open("mem", "mem://example/locks/done", objsync.WithoutRenewal())
	defer mu.Close()
	if _, err := mu.Lock(ctx, 200*time.Millisecond); err != nil {
		panic(err)
	}
	work := time.NewTimer(time.Hour) // stands for a long job
	defer work.Stop()
	select {
	case <-work.C:
	case <-mu.Done():
		fmt.Println("stopped:", errors.Is(mu.Err(), objsync.ErrLockLost))
	}
	fmt.Println("unlock:", errors.Is(mu.Unlock(ctx), objsync.ErrLockLost))
	// Output:
	// stopped: true
	// unlock: true
}

func ExampleMutex_Inspect() {
	ctx := context.Background()
	mu, _ := objsync.Open("mem", "mem://example/locks/inspect", objsync.WithValue("deploy #1234"))
	defer mu.Close()
	fence, _ := mu.Lock(ctx, time.Minute)
	st, err := mu.Inspect(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Held, st.Fence == fence, st.Value, st.TTL)
	_ = mu.Unlock(ctx)
	// Output: true true deploy #1234 1m0s
}
