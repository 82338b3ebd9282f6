package integration

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestMinIOCluster checks the distributed MinIO harness: 4 nodes form one
// erasure set behind node 0, a create-only PUT (If-None-Match: *) works, and
// with node 2 killed a replacing PUT (If-Match) and a GET through node 0
// still succeed (node 0 was restarted just before). Node 2 then comes back
// with its drive: the object reads back through node 0 and through node 2
// itself, and with nodes 1 and 3 killed, an object written before node 2
// went down still reads from the drives of nodes 0 and 2 alone, or, where
// MinIO says it is absent, cannot be created again; nor can a new object.
// Each step's time is logged.
func TestMinIOCluster(t *testing.T) {
	const nodes, down = 4, 2
	lap := stopwatch(t)
	c := StartMinIOCluster(t, nodes)
	lap("StartMinIOCluster")
	t.Logf("distributed minio %s (objsync.version label of %s), %d nodes, node 0 at %s",
		c.Version, MinIOImage, c.Nodes, c.Endpoint)
	if c.Version == "" {
		t.Fatalf("image %s has no objsync.version label", MinIOImage)
	}
	if c.Nodes != nodes || c.Kind != "minio" || c.Bucket == "" {
		t.Fatalf("cluster: Nodes %d, Kind %q, Bucket %q", c.Nodes, c.Kind, c.Bucket)
	}
	if c.NodeEndpoint(0) != c.Endpoint {
		t.Fatalf("NodeEndpoint(0) = %s, Endpoint %s", c.NodeEndpoint(0), c.Endpoint)
	}
	seen := map[string]bool{}
	for i := range nodes {
		e := c.NodeEndpoint(i)
		if !strings.HasPrefix(e, "http://127.0.0.1:") || seen[e] {
			t.Fatalf("NodeEndpoint(%d) = %s: not on loopback, or another node's", i, e)
		}
		seen[e] = true
	}

	cl := c.Client()
	const key = "cluster/lock"
	etag, err := putCreateOnly(cl, c.Bucket, key, "first")
	if err != nil {
		t.Fatalf("create-only PUT on an absent key: %v", err)
	}
	checkS3(t, cl, c.Bucket, key, "first", etag)
	if _, err := putCreateOnly(cl, c.Bucket, key, "again"); httpStatus(err) != http.StatusPreconditionFailed {
		t.Fatalf("create-only PUT on a present key: status %d (%v), want 412", httpStatus(err), err)
	}
	// Written on all four drives, for the last check.
	const before = "cluster/before"
	etagBefore, err := putCreateOnly(cl, c.Bucket, before, "all nodes up")
	if err != nil {
		t.Fatalf("create-only PUT: %v", err)
	}
	lap("create-only PUTs and a GET, all nodes up")
	// Restart returns once node 0 sees all nodes again, so that a node
	// may be killed right after.
	c.Restart(t)
	lap("Restart (node 0)")
	checkS3(t, cl, c.Bucket, key, "first", etag)

	c.KillNode(t, down)
	lap("KillNode(2)")
	if nodeAnswers(c.NodeEndpoint(down)) {
		t.Fatalf("node %d at %s still answers after KillNode", down, c.NodeEndpoint(down))
	}

	// Node 0 may take a moment to notice the dead node: retry.
	etag2 := retryS3(t, "PUT If-Match while node 2 is down", func() (string, error) {
		e, err := putIfMatch(cl, c.Bucket, key, "second", etag)
		if httpStatus(err) == http.StatusPreconditionFailed {
			// An earlier try may have written it and timed out.
			if body, e2, gerr := getObject(cl, c.Bucket, key); gerr == nil && body == "second" {
				return e2, nil
			}
		}
		return e, err
	})
	lap("PUT If-Match through node 0, node 2 down")
	if etag2 == etag {
		t.Fatalf("PUT of new content kept ETag %s", etag)
	}
	retryS3(t, "GET while node 2 is down", func() (string, error) {
		body, e, err := getObject(cl, c.Bucket, key)
		if err == nil && (body != "second" || e != etag2) {
			t.Fatalf("read %q with ETag %s while node %d is down, want %q with ETag %s", body, e, down, "second", etag2)
		}
		return e, err
	})
	lap("GET through node 0, node 2 down")
	if _, err := putIfMatch(cl, c.Bucket, key, "stale", etag); httpStatus(err) != http.StatusPreconditionFailed {
		t.Fatalf("PUT If-Match a replaced ETag while node %d is down: status %d (%v), want 412", down, httpStatus(err), err)
	}
	lap("PUT If-Match a stale ETag (412), node 2 down")

	c.StartNode(t, down)
	lap("StartNode(2)")
	checkS3(t, cl, c.Bucket, key, "second", etag2)
	nodeClient := S3Server{Endpoint: c.NodeEndpoint(down), Region: c.Region, AccessKey: c.AccessKey, SecretKey: c.SecretKey}.Client()
	checkS3(t, nodeClient, c.Bucket, key, "second", etag2)
	if _, err := putIfMatch(cl, c.Bucket, key, "third", etag2); err != nil {
		t.Fatalf("PUT If-Match after node %d came back: %v", down, err)
	}
	lap("GET through nodes 0 and 2, PUT If-Match, all nodes up again")

	// Node 2's drive kept what it held: with nodes 1 and 3 gone, the
	// object written before the kill reads from nodes 0 and 2 alone (the
	// read quorum, 2 of 4 drives). MinIO keeps dialling the vanished nodes
	// (10 s each) before it gives up on them: this GET took 10 to 40 s.
	c.KillNode(t, 1)
	c.KillNode(t, 3)
	lap("KillNode(1), KillNode(3)")
	body, e, err := getWithReadQuorum(t, cl, c.Bucket, before)
	var absent *types.NoSuchKey
	switch {
	case err == nil:
		if body != "all nodes up" || e != etagBefore {
			t.Fatalf("read %q with ETag %s from nodes 0 and 2, want %q with ETag %s", body, e, "all nodes up", etagBefore)
		}
		lap("GET through node 0, only nodes 0 and 2 up")
	case errors.As(err, &absent):
		// One run in a few dozen, MinIO answered 404 NoSuchKey for this
		// object for minutes, through node 0 and through node 2 alike.
		// What a lock needs of such an answer is that it cannot lead to a
		// second object: a create-only PUT needs write quorum, 3 of 4
		// drives, which two nodes lack.
		_, _, viaNode2 := getObject(S3Server{Endpoint: c.NodeEndpoint(2), Region: c.Region, AccessKey: c.AccessKey, SecretKey: c.SecretKey}.Client(), c.Bucket, before)
		t.Logf("MinIO answers that %s, written with all nodes up, is absent with only nodes 0 and 2 up: through node 0: %v; through node 2: %v", before, err, viaNode2)
		createRefused(t, cl, c.Bucket, before)
		lap("GET through node 0 (404), create-only PUT refused, only nodes 0 and 2 up")
	default:
		t.Fatalf("GET with only nodes 0 and 2 up: %v", err)
	}
	// Nor can a new object be made without write quorum.
	createRefused(t, cl, c.Bucket, "cluster/after")
	lap("create-only PUT of a new key refused, only nodes 0 and 2 up")
}

// createRefused fails the test unless a create-only PUT of key is refused
// and a GET after it does not find what it would have written (a PUT that
// timed out could still land).
func createRefused(t *testing.T, c *s3.Client, bucket, key string) {
	t.Helper()
	const body = "created without write quorum"
	if e, err := putCreateOnly(c, bucket, key, body); err == nil {
		t.Fatalf("a create-only PUT of %s succeeded (ETag %s) with only 2 of 4 nodes up", key, e)
	} else {
		t.Logf("create-only PUT of %s refused: %v", key, err)
	}
	if got, _, err := getObject(c, bucket, key); err == nil && got == body {
		t.Fatalf("the create-only PUT of %s that was refused landed", key)
	}
}

// getWithReadQuorum GETs the object through c as retryS3 would, but gives
// up after 30 s of 404 NoSuchKey answers in a row, and returns the last
// error instead of failing.
func getWithReadQuorum(t *testing.T, c *s3.Client, bucket, key string) (body, etag string, err error) {
	t.Helper()
	var absentSince time.Time
	err = retry(t, "GET "+key+" with only nodes 0 and 2 up", func() (err error) {
		body, etag, err = getObject(c, bucket, key)
		return err
	}, func(err error) bool {
		var absent *types.NoSuchKey
		if !errors.As(err, &absent) {
			absentSince = time.Time{}
			return false
		}
		if absentSince.IsZero() {
			absentSince = time.Now()
		}
		return time.Since(absentSince) > 30*time.Second
	})
	return body, etag, err
}

// stopwatch returns a function that logs how long the step it names took,
// since the previous call or the stopwatch's start.
func stopwatch(t *testing.T) func(step string) {
	last := time.Now()
	return func(step string) {
		t.Helper()
		now := time.Now()
		t.Logf("%s: %v", step, now.Sub(last).Round(time.Millisecond))
		last = now
	}
}

// retryS3 calls op until it succeeds, for up to two minutes, and returns
// its result. It logs the failures.
func retryS3(t *testing.T, what string, op func() (string, error)) string {
	t.Helper()
	var v string
	if err := retry(t, what, func() (err error) { v, err = op(); return err }, nil); err != nil {
		t.Fatalf("%s: still failing after two minutes: %v", what, err)
	}
	return v
}

// retry calls op until it succeeds, two minutes have passed, or giveUp
// (if not nil) says so of its error, logging each failure; it returns op's
// last error.
func retry(t *testing.T, what string, op func() error, giveUp func(error) bool) error {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for try := 1; ; try++ {
		began := time.Now()
		err := op()
		if err == nil {
			return nil
		}
		t.Logf("%s: try %d failed after %v: %v", what, try, time.Since(began).Round(time.Millisecond), err)
		if time.Now().After(deadline) || (giveUp != nil && giveUp(err)) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// getObject returns the object's content and ETag. It waits up to a minute:
// a GET through node 0 soon after nodes were killed can take tens of
// seconds (see KillNode).
func getObject(c *s3.Client, bucket, key string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", "", err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return string(b), aws.ToString(out.ETag), err
}

// nodeAnswers reports whether an HTTP server answers at endpoint.
func nodeAnswers(endpoint string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	return answers(ctx, hc, endpoint)
}
