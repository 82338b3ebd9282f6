package objsync_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/objsync/objsync"
	_ "github.com/objsync/objsync/mem"
)

// Run campaigns, calls the function while this candidate leads, and
// resigns when it returns.
func ExampleElection_Run() {
	ctx := context.Background()
	mu, err := objsync.Open("mem", "mem://example/elections/run")
	if err != nil {
		panic(err)
	}
	defer mu.Close()
	e := objsync.NewElection(mu, objsync.WithLeaderTTL(5*time.Second))

	err = e.Run(ctx, "10.0.0.7:8080", func(ctx context.Context) error {
		// Lead until ctx is cancelled: leadership lost, or the caller's ctx ended.
		l, err := e.Leader(ctx)
		if err != nil {
			return err
		}
		fmt.Println("leading as", l.Value, "in term", l.Fence)
		return nil
	})
	fmt.Println("Run returned:", err)
	_, err = e.Leader(ctx)
	fmt.Println("after Run:", err)
	// Output:
	// leading as 10.0.0.7:8080 in term 1
	// Run returned: <nil>
	// after Run: objsync: no leader
}

// Two candidates and an observer, each with a Mutex of its own on the same
// lock: the observer sees every term, in order, and the values the leader
// proclaims.
func ExampleElection() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const dsn = "mem://example/elections/scheduler"
	open := func(opts ...objsync.Option) *objsync.Mutex {
		mu, err := objsync.Open("mem", dsn, opts...)
		if err != nil {
			panic(err)
		}
		return mu
	}
	muA, muB := open(), open()
	defer muA.Close()
	defer muB.Close()
	a, b := objsync.NewElection(muA), objsync.NewElection(muB)
	// Observe polls at the Mutex's longest backoff: here every 10ms.
	muObserver := open(objsync.WithBackoff(time.Millisecond, 10*time.Millisecond))
	defer muObserver.Close()
	leaders := objsync.NewElection(muObserver).Observe(ctx)

	fence, err := a.Campaign(ctx, "a:8080")
	if err != nil {
		panic(err)
	}
	fmt.Println("a leads, term", fence)
	l := <-leaders
	fmt.Println("observed:", l.Value, l.Fence)

	if err := a.Proclaim(ctx, "a:9090"); err != nil {
		panic(err)
	}
	l = <-leaders
	fmt.Println("observed:", l.Value, l.Fence)

	// b waits while a leads, and leads once a resigns.
	campaign := make(chan int64)
	go func() {
		fence, err := b.Campaign(ctx, "b:8080")
		if err != nil {
			panic(err)
		}
		campaign <- fence
	}()
	if err := a.Resign(ctx); err != nil {
		panic(err)
	}
	fmt.Println("b leads, term", <-campaign)
	l = <-leaders
	fmt.Println("observed:", l.Value, l.Fence)
	if l, err = b.Leader(ctx); err != nil {
		panic(err)
	}
	fmt.Println("Leader:", l.Value, l.Fence)
	if err := b.Resign(ctx); err != nil {
		panic(err)
	}
	_, err = a.Leader(ctx)
	fmt.Println("after b resigned:", errors.Is(err, objsync.ErrNoLeader))
	// Output:
	// a leads, term 1
	// observed: a:8080 1
	// observed: a:9090 1
	// b leads, term 2
	// observed: b:8080 2
	// Leader: b:8080 2
	// after b resigned: true
}

// Leader tells who leads without campaigning: for example, where to send
// the requests that only the leader serves.
func ExampleElection_Leader() {
	ctx := context.Background()
	const dsn = "mem://example/elections/leader"
	candidate, err := objsync.Open("mem", dsn)
	if err != nil {
		panic(err)
	}
	defer candidate.Close()
	client, err := objsync.Open("mem", dsn)
	if err != nil {
		panic(err)
	}
	defer client.Close()
	watcher := objsync.NewElection(client)

	_, err = watcher.Leader(ctx)
	fmt.Println("before any campaign:", errors.Is(err, objsync.ErrNoLeader))
	if _, err := objsync.NewElection(candidate).Campaign(ctx, "10.0.0.7:8080"); err != nil {
		panic(err)
	}
	l, err := watcher.Leader(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("send requests to", l.Value, "(term", l.Fence, "fences its writes)")
	// Output:
	// before any campaign: true
	// send requests to 10.0.0.7:8080 (term 1 fences its writes)
}

// Observe sends the leader each time it changes (a new term or a new
// proclaimed value) until ctx ends.
func ExampleElection_Observe() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const dsn = "mem://example/elections/observe"
	candidate, err := objsync.Open("mem", dsn)
	if err != nil {
		panic(err)
	}
	defer candidate.Close()
	// Observe polls at the Mutex's longest backoff: here every 10ms.
	observer, err := objsync.Open("mem", dsn, objsync.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		panic(err)
	}
	defer observer.Close()
	leaders := objsync.NewElection(observer).Observe(ctx)

	e := objsync.NewElection(candidate)
	for _, value := range []string{"blue", "green"} {
		if _, err := e.Campaign(ctx, value); err != nil {
			panic(err)
		}
		l := <-leaders
		fmt.Println("term", l.Fence, "led by", l.Value)
		if err := e.Resign(ctx); err != nil {
			panic(err)
		}
	}
	// Output:
	// term 1 led by blue
	// term 2 led by green
}
