package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// TestS3Servers checks that MinIO, Ceph and SeaweedFS start, honour a create-only PUT
// (If-None-Match: *), and come back on the same address after Stop and Start
// with the object and its ETag, which a replacing PUT (If-Match) still
// accepts.
func TestS3Servers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) S3Server
	}{
		{"minio", StartMinIO},
		{"ceph", StartCeph},
		{"seaweedfs", StartSeaweedFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			began := time.Now()
			s := tc.start(t)
			t.Logf("%s %s at %s ready in %v", s.Kind, s.Version, s.Endpoint, time.Since(began).Round(time.Millisecond))
			if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") {
				t.Fatalf("endpoint %s is not on loopback", s.Endpoint)
			}
			c := s.Client()
			const key = "smoke/create-only"

			etag, err := putCreateOnly(c, s.Bucket, key, "first")
			if err != nil {
				t.Fatalf("create-only PUT on an absent key: %v", err)
			}
			checkS3(t, c, s.Bucket, key, "first", etag)
			_, err = putCreateOnly(c, s.Bucket, key, "second")
			if status := httpStatus(err); status != http.StatusPreconditionFailed {
				t.Fatalf("create-only PUT on a present key: status %d (%v), want 412", status, err)
			}
			checkS3(t, c, s.Bucket, key, "first", etag)

			// Restart is Stop then Start; check the store is really gone
			// in between.
			began = time.Now()
			s.Stop(t)
			stopped := time.Since(began)
			if _, err := putCreateOnly(c, s.Bucket, "smoke/while-stopped", "x"); err == nil {
				t.Fatal("PUT to a stopped server succeeded")
			} else {
				t.Logf("PUT while stopped: %v", err)
			}
			began = time.Now()
			s.Start(t)
			t.Logf("stopped in %v, started again in %v",
				stopped.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

			// The restart kept the object and its version: the same
			// client reads it back, and a replacing PUT with that ETag
			// (a lock renewal) succeeds while a stale one fails.
			checkS3(t, c, s.Bucket, key, "first", etag)
			etag2, err := putIfMatch(c, s.Bucket, key, "second", etag)
			if err != nil {
				t.Fatalf("PUT If-Match the ETag from before the restart: %v", err)
			}
			if etag2 == etag {
				t.Fatalf("PUT of new content kept ETag %s", etag)
			}
			_, err = putIfMatch(c, s.Bucket, key, "third", etag)
			if status := httpStatus(err); status != http.StatusPreconditionFailed {
				t.Fatalf("PUT If-Match a replaced ETag: status %d (%v), want 412", status, err)
			}
			checkS3(t, c, s.Bucket, key, "second", etag2)
			if _, err := putCreateOnly(c, s.Bucket, "smoke/after-restart", "third"); err != nil {
				t.Fatalf("create-only PUT after restart: %v", err)
			}
			// Metadata changes work at once too. A Ceph gateway killed
			// instead of stopped would leave its watches behind, and a
			// bucket creation would wait 30 s for it (see
			// images/ceph/start.sh).
			began = time.Now()
			b := s.NewBucket(t)
			if took := time.Since(began); took > 15*time.Second {
				t.Fatalf("creating a bucket after the restart took %v", took)
			}
			if _, err := putCreateOnly(c, b, key, "first"); err != nil {
				t.Fatalf("create-only PUT in a bucket made after the restart: %v", err)
			}
		})
	}
}

// putCreateOnly PUTs with If-None-Match: * and returns the new ETag.
func putCreateOnly(c *s3.Client, bucket, key, body string) (string, error) {
	return putS3(c, &s3.PutObjectInput{
		Bucket:      aws.String(bucket),
		Key:         aws.String(key),
		Body:        strings.NewReader(body),
		IfNoneMatch: aws.String("*"),
	})
}

// putIfMatch PUTs with If-Match: etag and returns the new ETag. The ETag
// goes without its quotes, as the s3 driver sends it: Ceph RGW compares the
// header with the stored, unquoted ETag and refuses the quoted form.
func putIfMatch(c *s3.Client, bucket, key, body, etag string) (string, error) {
	return putS3(c, &s3.PutObjectInput{
		Bucket:  aws.String(bucket),
		Key:     aws.String(key),
		Body:    strings.NewReader(body),
		IfMatch: aws.String(strings.Trim(etag, `"`)),
	})
}

func putS3(c *s3.Client, in *s3.PutObjectInput) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// checkS3 fails the test unless the object holds body and has the ETag.
func checkS3(t *testing.T, c *s3.Client, bucket, key, body, etag string) {
	t.Helper()
	got, gotETag := getS3(t, c, bucket, key)
	if got != body || gotETag != etag {
		t.Fatalf("read %q with ETag %s, want %q with ETag %s", got, gotETag, body, etag)
	}
}

// getS3 returns the object's content and ETag.
func getS3(t *testing.T, c *s3.Client, bucket, key string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GET %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("GET %s/%s body: %v", bucket, key, err)
	}
	return string(b), aws.ToString(out.ETag)
}

// httpStatus returns the HTTP status of an SDK error, 0 if it has none.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// TestFakeGCS checks that fake-gcs-server starts, honours DoesNotExist and
// GenerationMatch conditions through the Go client (both ways of pointing it
// at an emulator), and comes back on the same address after Restart with its
// objects and their generations, new generations still greater than all
// before.
func TestFakeGCS(t *testing.T) {
	began := time.Now()
	g := StartFakeGCS(t)
	t.Logf("fake-gcs-server %s at %s ready in %v", g.Version, g.Endpoint, time.Since(began).Round(time.Millisecond))

	t.Run("WithEndpoint", func(t *testing.T) {
		c := g.NewClient(t)
		defer c.Close()
		checkGCSCreateOnly(t, c, g.Bucket, "smoke/with-endpoint")
	})

	t.Run("STORAGE_EMULATOR_HOST", func(t *testing.T) {
		t.Setenv("STORAGE_EMULATOR_HOST", g.Host)
		c, err := storage.NewClient(context.Background(), option.WithoutAuthentication())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		checkGCSCreateOnly(t, c, g.Bucket, "smoke/emulator-host")
	})

	// Objects bigger than a chunk go through a resumable upload session,
	// whose URL the server builds from -external-url.
	t.Run("ResumableUpload", func(t *testing.T) {
		c := g.NewClient(t)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		obj := c.Bucket(g.Bucket).Object("smoke/resumable")
		w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
		w.ChunkSize = 256 << 10
		body := bytes.Repeat([]byte("0123456789abcdef"), 40<<10) // 640 KiB: three chunks
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("resumable upload: %v", err)
		}
		if got, _ := readGCS(t, obj); got != string(body) {
			t.Fatalf("read %d bytes, want %d", len(got), len(body))
		}
	})

	t.Run("Restart", func(t *testing.T) {
		// One client through the restart, as a lock holder would have.
		c := g.NewClient(t)
		defer c.Close()
		obj := c.Bucket(g.Bucket).Object("smoke/restart")
		gen, err := writeGCS(obj.If(storage.Conditions{DoesNotExist: true}), "v0")
		if err != nil {
			t.Fatalf("create-only write: %v", err)
		}
		// A few replacing writes: each generation greater than the last.
		for i := 1; i <= 3; i++ {
			gen = replaceGCS(t, obj, gen, fmt.Sprintf("v%d", i))
		}
		before := gen
		t.Logf("generation before the restart: %d", before)

		began := time.Now()
		g.Stop(t)
		stopped := time.Since(began)
		if _, err := writeGCS(c.Bucket(g.Bucket).Object("smoke/while-stopped"), "x"); err == nil {
			t.Fatal("write to a stopped server succeeded")
		} else {
			t.Logf("write while stopped: %v", err)
		}
		began = time.Now()
		g.Start(t)
		t.Logf("stopped in %v, started again in %v",
			stopped.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

		// The object and its generation survived, and a write
		// conditioned on that generation (a lock renewal) succeeds.
		if got, gotGen := readGCS(t, obj); got != "v3" || gotGen != before {
			t.Fatalf("after restart read %q generation %d, want %q generation %d", got, gotGen, "v3", before)
		}
		gen = replaceGCS(t, obj, before, "v4")
		t.Logf("first generation after the restart: %d (+%d)", gen, gen-before)
		// The generation from before the restart is stale now: a lock
		// protocol's compare-and-swap depends on it never coming back.
		_, err = writeGCS(obj.If(storage.Conditions{GenerationMatch: before}), "stale")
		var gerr *googleapi.Error
		if !errors.As(err, &gerr) || gerr.Code != http.StatusPreconditionFailed {
			t.Fatalf("write on a replaced generation: %v, want a 412 googleapi.Error", err)
		}
		for i := 5; i <= 7; i++ {
			gen = replaceGCS(t, obj, gen, fmt.Sprintf("v%d", i))
		}
		// Generations of new objects come from the same clock.
		fresh, err := writeGCS(c.Bucket(g.Bucket).Object("smoke/new-after-restart").
			If(storage.Conditions{DoesNotExist: true}), "new")
		if err != nil {
			t.Fatalf("create-only write after restart: %v", err)
		}
		if fresh <= before {
			t.Fatalf("new object after restart has generation %d, not above %d from before", fresh, before)
		}
		checkGCSCreateOnly(t, c, g.Bucket, "smoke/after-restart")
	})
}

// replaceGCS writes body on condition that the object's generation is gen,
// and returns the new generation, which must be greater.
func replaceGCS(t *testing.T, obj *storage.ObjectHandle, gen int64, body string) int64 {
	t.Helper()
	next, err := writeGCS(obj.If(storage.Conditions{GenerationMatch: gen}), body)
	if err != nil {
		t.Fatalf("write on generation %d: %v", gen, err)
	}
	if next <= gen {
		t.Fatalf("write on generation %d made generation %d, not greater", gen, next)
	}
	if got, gotGen := readGCS(t, obj); got != body || gotGen != next {
		t.Fatalf("read %q generation %d, want %q generation %d", got, gotGen, body, next)
	}
	return next
}

func checkGCSCreateOnly(t *testing.T, c *storage.Client, bucket, key string) {
	t.Helper()
	obj := c.Bucket(bucket).Object(key)
	gen, err := writeGCS(obj.If(storage.Conditions{DoesNotExist: true}), "first")
	if err != nil {
		t.Fatalf("create-only write on an absent object: %v", err)
	}
	if got, gotGen := readGCS(t, obj); got != "first" || gotGen != gen {
		t.Fatalf("read %q generation %d, want %q generation %d", got, gotGen, "first", gen)
	}
	_, err = writeGCS(obj.If(storage.Conditions{DoesNotExist: true}), "second")
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != http.StatusPreconditionFailed {
		t.Fatalf("create-only write on a present object: %v, want a 412 googleapi.Error", err)
	}
	_, err = writeGCS(obj.If(storage.Conditions{GenerationMatch: gen + 1}), "second")
	if !errors.As(err, &gerr) || gerr.Code != http.StatusPreconditionFailed {
		t.Fatalf("write on another generation: %v, want a 412 googleapi.Error", err)
	}
	if got, gotGen := readGCS(t, obj); got != "first" || gotGen != gen {
		t.Fatalf("after the refused writes read %q generation %d, want %q generation %d", got, gotGen, "first", gen)
	}
}

// writeGCS writes the object and returns its new generation.
func writeGCS(obj *storage.ObjectHandle, body string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := obj.NewWriter(ctx)
	if _, err := io.Copy(w, bytes.NewBufferString(body)); err != nil {
		_ = w.Close()
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return w.Attrs().Generation, nil
}

// readGCS returns the object's content and generation.
func readGCS(t *testing.T, obj *storage.ObjectHandle) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := obj.NewReader(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", obj.ObjectName(), err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", obj.ObjectName(), err)
	}
	return string(b), r.Attrs.Generation
}
