package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/api/iterator"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/driver/drivertest"
	"github.com/objsync/objsync/internal/locktest"

	_ "github.com/objsync/objsync/azblob"
	_ "github.com/objsync/objsync/gcs"
	_ "github.com/objsync/objsync/minio"
	_ "github.com/objsync/objsync/s3"
)

// storeUnderTest is one driver on one server: how to make the DSN of a key,
// how to restart the server and list what a prefix holds, and what the
// conformance suite may expect of it.
type storeUnderTest struct {
	driver  string
	dsn     func(key string) string
	restart func(t *testing.T)
	list    func(t *testing.T, prefix string) []string
	opts    []drivertest.Option
}

// objsyncBin is the objsync command, built once for all tests.
var objsyncBin string

func TestMain(m *testing.M) {
	runChaosRole()
	dir, err := os.MkdirTemp("", "objsync-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	objsyncBin = filepath.Join(dir, "objsync")
	build := exec.Command("go", "build", "-o", objsyncBin, "./cmd/objsync")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building objsync: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestDriversOnMinIO runs the s3 and minio drivers against MinIO.
func TestDriversOnMinIO(t *testing.T) { testS3Server(t, StartMinIO(t)) }

// TestDriversOnCeph runs the s3 and minio drivers against Ceph RGW.
func TestDriversOnCeph(t *testing.T) { testS3Server(t, StartCeph(t)) }

// TestDriversOnSeaweedFS runs the s3 and minio drivers against SeaweedFS's
// S3 gateway. It serializes the conditional writes of one key behind a lock
// of its filer, whose waiters poll it once a second: one round of 32 racing
// writers takes up to 12 s there, so the conformance races are smaller.
func TestDriversOnSeaweedFS(t *testing.T) {
	testS3Server(t, StartSeaweedFS(t), drivertest.Racers(8, 5))
}

// testS3Server runs the s3 and minio drivers against srv, with the
// conformance options opts.
func testS3Server(t *testing.T, srv S3Server, opts ...drivertest.Option) {
	t.Logf("%s %s at %s", srv.Kind, srv.Version, srv.Endpoint)
	// The s3 driver takes credentials from the SDK's chain; the
	// environment comes first in it. No instance metadata lookups.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	host := strings.TrimPrefix(srv.Endpoint, "http://")
	restart := func(t *testing.T) { srv.Restart(t) }
	list := func(t *testing.T, prefix string) []string {
		out, err := srv.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket), Prefix: aws.String(prefix)})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		return keys
	}
	// ETags are MD5 sums of the content on every server.
	contentVersions := append([]drivertest.Option{drivertest.ContentVersions()}, opts...)
	for _, st := range []storeUnderTest{
		{
			driver: "s3",
			dsn: func(key string) string {
				return fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s", srv.Bucket, key, url.QueryEscape(srv.Endpoint), srv.Region)
			},
			restart: restart, list: list, opts: contentVersions,
		},
		{
			driver: "minio",
			dsn: func(key string) string {
				return fmt.Sprintf("minio://%s:%s@%s/%s/%s?secure=false&region=%s",
					url.PathEscape(srv.AccessKey), url.PathEscape(srv.SecretKey), host, srv.Bucket, key, srv.Region)
			},
			restart: restart, list: list, opts: contentVersions,
		},
	} {
		t.Run(st.driver, func(t *testing.T) { testStore(t, st) })
	}
}

// TestDriversOnFakeGCS runs the gcs driver against fake-gcs-server.
func TestDriversOnFakeGCS(t *testing.T) {
	srv := StartFakeGCS(t)
	t.Logf("fake-gcs-server %s at %s", srv.Version, srv.Endpoint)
	t.Setenv("STORAGE_EMULATOR_HOST", srv.Host)
	testStore(t, storeUnderTest{
		driver:  "gcs",
		dsn:     func(key string) string { return fmt.Sprintf("gs://%s/%s", srv.Bucket, key) },
		restart: func(t *testing.T) { srv.Restart(t) },
		list: func(t *testing.T, prefix string) []string {
			client := srv.NewClient(t)
			defer client.Close()
			var names []string
			it := client.Bucket(srv.Bucket).Objects(context.Background(), &storage.Query{Prefix: prefix})
			for {
				o, err := it.Next()
				if err == iterator.Done {
					return names
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, o.Name)
			}
		},
	})
}

// TestDriversOnAzurite runs the azblob driver against Azurite, with the
// account's shared key from the environment, as a user gives it.
func TestDriversOnAzurite(t *testing.T) {
	srv := StartAzurite(t)
	t.Logf("Azurite %s at %s", srv.Version, srv.Endpoint)
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "") // restored after the test
	os.Unsetenv("AZURE_STORAGE_CONNECTION_STRING")
	t.Setenv("AZURE_STORAGE_KEY", srv.Key)
	testStore(t, storeUnderTest{
		driver: "azblob",
		dsn: func(key string) string {
			return fmt.Sprintf("azblob://%s/%s/%s?endpoint=%s", srv.Account, srv.Container, key, url.QueryEscape(srv.Endpoint))
		},
		restart: func(t *testing.T) { srv.Restart(t) },
		list:    func(t *testing.T, prefix string) []string { return srv.List(t, prefix) },
	})
}

// testStore runs the driver conformance suite, the lock and election
// suites, then the restart case, on one store.
func testStore(t *testing.T, st storeUnderTest) {
	d, ok := driver.Lookup(st.driver)
	if !ok {
		t.Fatalf("driver %q not registered", st.driver)
	}
	open := func(t *testing.T, key string) driver.Store {
		s, gotKey, err := d.Open(st.dsn(key))
		if err != nil {
			t.Fatal(err)
		}
		if gotKey != key {
			t.Fatalf("DSN for key %q opened key %q", key, gotKey)
		}
		return s
	}
	// Subtest names make unique keys; spaces are fine in object keys.
	t.Run("Conformance", func(t *testing.T) {
		drivertest.Run(t, func(t *testing.T) (driver.Store, string) {
			return open(t, "k"), t.Name() + "/"
		}, st.opts...)
	})
	t.Run("Lock", func(t *testing.T) {
		locktest.Run(t, func(t *testing.T) (driver.Store, string) {
			return open(t, t.Name()), t.Name()
		})
	})
	t.Run("QueueLock", func(t *testing.T) {
		locktest.RunQueue(t, func(t *testing.T) (driver.Store, string) {
			return open(t, t.Name()), t.Name()
		})
	})
	t.Run("Election", func(t *testing.T) {
		locktest.RunElection(t, func(t *testing.T) (driver.Store, string) {
			return open(t, t.Name()), t.Name()
		})
	})
	t.Run("Check", func(t *testing.T) {
		// objsync check, as a user runs it: every required behaviour
		// must hold, and it must leave nothing behind. Its table is
		// logged: what this server answers to each probe.
		out, err := exec.Command(objsyncBin, "check", "--write-rate", "--driver", st.driver, st.dsn(t.Name()+"/lock")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "passed: the store keeps the conditions objsync relies on") {
			t.Fatalf("objsync check: %v\n%s", err, out)
		}
		t.Logf("objsync check:\n%s", out)
		if left := st.list(t, t.Name()+"/"); len(left) != 0 {
			t.Fatalf("objsync check left %q", left)
		}
	})
	t.Run("Restart", func(t *testing.T) {
		locktest.RunRestart(t, open(t, t.Name()), t.Name(), st.restart)
	})
}
