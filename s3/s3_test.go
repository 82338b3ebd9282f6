package s3

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat/s3test"
)

// TestMain isolates the tests from the machine's AWS configuration, so that
// credentials come from the environment and nothing asks an instance
// metadata service.
func TestMain(m *testing.M) {
	for _, name := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"} {
		os.Unsetenv(name)
	}
	os.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	os.Setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-shown")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Exit(m.Run())
}

func TestRegistered(t *testing.T) {
	if _, ok := driver.Lookup("s3"); !ok {
		t.Fatal(`driver "s3" is not registered`)
	}
}

func TestParseDSN(t *testing.T) {
	s3test.ParseDSN(t, parseDSN, []struct {
		DSN, Bucket, Key string
		Want             settings
	}{
		{"s3://b/k", "b", "k", settings{}},
		{"s3://my-bucket/locks/deploy", "my-bucket", "locks/deploy", settings{}},
		{"s3://b/a%3Fb%23c", "b", "a?b#c", settings{}},
		{"s3://b/k?region=eu-west-1&profile=ops", "b", "k", settings{region: "eu-west-1", profile: "ops"}},
		{"s3://b/k?endpoint=http://127.0.0.1:9000", "b", "k", settings{endpoint: "http://127.0.0.1:9000", pathStyle: true}},
		{"s3://b/k?endpoint=HTTP://MinIO.local:9000/", "b", "k", settings{endpoint: "http://minio.local:9000", pathStyle: true}},
		{"s3://b/k?endpoint=https://acct.r2.example&path_style=false&region=auto", "b", "k",
			settings{endpoint: "https://acct.r2.example", region: "auto"}},
		{"s3://b/k?path_style=true", "b", "k", settings{pathStyle: true}},
	})
}

func TestOpenRejects(t *testing.T) {
	const secret = "s3cr3t"
	s3test.OpenRejects(t, s3Driver{}, secret, []struct{ DSN, Err string }{
		{"s3://b", "missing key"},
		{"s3://b/", "missing key"},
		{"s3:///k", "missing bucket"},
		{"s3:b/k", "want s3://BUCKET/KEY"},
		{"gs://b/k", "scheme must be s3"},
		{"s3://b/k?regoin=eu-west-1", `unknown DSN parameter "regoin"`},
		// url.URL.Query would drop the endpoint, and the lock would go to AWS.
		{"s3://b/k?endpoint=http%zz://127.0.0.1:9000", `DSN parameter "endpoint" has an invalid %-escape`},
		{"s3://b/k?region=us-east-1;endpoint=http://127.0.0.1:9000", "use '&'"},
		{"s3://b/k?endpoint=http://127.0.0.1:9000&%zz=1", "a parameter name in the DSN's query has an invalid %-escape"},
		{"s3://b/k?path_style=maybe", "path_style must be true or false"},
		{"s3://b/k?endpoint=127.0.0.1:9000", "endpoint must be an http:// or https:// URL"},
		{"s3://b/k?endpoint=ftp://host", "endpoint must be an http:// or https:// URL"},
		{"s3://b/k#frag", "unexpected '#'"},
		{"s3://b:9000/k", "a bucket name has no port"},
		{"s3://AKID:" + secret + "@b/k", "credentials do not belong in the DSN"},
		{"s3://AKID:" + secret + "@b:bad/k", "invalid port"},
		{"s3://b/k?endpoint=http://AKID:" + secret + "@host", "must not have user information"},
		{"s3://b/k?profile=no-such-profile", "loading AWS configuration"},
	})
}

func TestOpenSharesOneClientPerSettings(t *testing.T) {
	s3test.OpenSharesOneClientPerSettings(t, s3Driver{}, s3test.Sharing{
		DSN: func(i int) string {
			return fmt.Sprintf("s3://bucket-%d/locks/%d?endpoint=http://127.0.0.1:1&region=test-sharing", i%7, i)
		},
		Others: []string{"s3://bucket-0/k?endpoint=http://127.0.0.1:1&region=test-sharing&path_style=false"},
		Client: func(st driver.Store) any { return st.(*store).client },
		Built:  clients.Len,
	})
}

// TestLocation: a location names the endpoint when there is one, so that
// the same bucket and key on two servers never read alike; and DSNs that
// differ only in their key open the same store, so that Mutexes share.
func TestLocation(t *testing.T) {
	for dsn, want := range map[string]string{
		"s3://b/locks/a?region=us-east-1":            "s3://b/locks/a",
		"s3://b/locks/a?endpoint=http://127.0.0.1:1": "s3://b/locks/a?endpoint=http://127.0.0.1:1",
		"s3://b/locks/a?endpoint=http://127.0.0.1:2": "s3://b/locks/a?endpoint=http://127.0.0.1:2",
	} {
		st, key, err := s3Driver{}.Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Location(key); got != want {
			t.Errorf("Open(%s).Location = %q, want %q", dsn, got, want)
		}
		again, _, err := s3Driver{}.Open(strings.Replace(dsn, "locks/a", "locks/b", 1))
		if err != nil || again != st {
			t.Errorf("another key of %s opened another store (err %v)", dsn, err)
		}
	}
}

// suite runs the tests shared with the minio driver on this driver.
var suite = s3test.Suite{
	Open: func(t *testing.T, url string) driver.Store {
		t.Helper()
		st, _, err := s3Driver{}.Open("s3://b/k?region=us-east-1&endpoint=" + url)
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
	Bucket:   "b",
	Location: "s3://b/k",
	Secret:   "s3cr3t", // a part of the secret key, so that no part shows
	CheckPut: assertNoChecksums,
	// The fake's port changes: the messages are checked up to it.
	WriteErrors: s3test.Msgs{
		"create-only on a present key": "write s3://b/k?endpoint=http://127.0.0.1:",
		"stale ETag":                   "write s3://b/k?endpoint=http://127.0.0.1:",
	},
	ReadErrors: s3test.Msgs{
		"missing key": "read s3://b/k?endpoint=http://127.0.0.1:",
	},
	DeleteErrors: s3test.Msgs{
		"missing bucket": `delete s3://b/k?endpoint=http://127.0.0.1:`,
		"access denied":  "delete s3://b/k?endpoint=http://127.0.0.1:",
	},
}

// assertNoChecksums checks that the SDK's default checksums, which several
// S3-compatible stores reject, are off.
func assertNoChecksums(t *testing.T, h http.Header) {
	t.Helper()
	for name := range h {
		if l := strings.ToLower(name); strings.HasPrefix(l, "x-amz-checksum-") ||
			l == "x-amz-sdk-checksum-algorithm" || l == "x-amz-trailer" {
			t.Errorf("request carries checksum header %s", name)
		}
	}
	if h.Get("Content-Encoding") == "aws-chunked" {
		t.Error("request body is aws-chunked")
	}
}

// TestS3Compat runs the tests shared with the minio driver.
func TestS3Compat(t *testing.T) { suite.Run(t) }

// TestDeleteIf: a conditional delete is a DELETE with the ETag unquoted
// in If-Match, and a 412 answer is a failed precondition.
func TestDeleteIf(t *testing.T) {
	for _, tt := range []struct {
		reply        s3test.Reply
		precondition bool
	}{
		{s3test.Reply{Status: 204}, false},
		{s3test.Reply{Status: 412, Code: "PreconditionFailed"}, true},
	} {
		fake := s3test.Serve(t, nil, tt.reply)
		st := suite.Open(t, fake.URL)
		err := st.(driver.ConditionalDeleter).DeleteIf(t.Context(), "k", "e1")
		if got := errors.Is(err, driver.ErrPrecondition); got != tt.precondition || (err != nil && !tt.precondition) {
			t.Errorf("answered %d: DeleteIf = %v; want precondition failed %v", tt.reply.Status, err, tt.precondition)
		}
		reqs := fake.Seen()
		if len(reqs) != 1 || reqs[0].Method != http.MethodDelete || reqs[0].Header.Get("If-Match") != "e1" {
			t.Errorf("requests %+v; want one DELETE with If-Match e1", reqs)
		}
	}
}
