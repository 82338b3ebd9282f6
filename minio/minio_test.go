package minio

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat/s3test"
)

const (
	accessKey = "AKIDTEST"
	secretKey = "s3cr3t-never-shown"
	envSecret = "env-s3cr3t"
)

// TestMain makes the credential chain stop at the environment, so that no
// test reads the user's files or asks an instance metadata service.
func TestMain(m *testing.M) {
	os.Setenv("MINIO_ROOT_USER", "ENVUSER")
	os.Setenv("MINIO_ROOT_PASSWORD", envSecret)
	os.Exit(m.Run())
}

func TestRegistered(t *testing.T) {
	if _, ok := driver.Lookup("minio"); !ok {
		t.Fatal(`driver "minio" is not registered`)
	}
}

func TestParseDSN(t *testing.T) {
	s3test.ParseDSN(t, parseDSN, []struct {
		DSN, Bucket, Key string
		Want             settings
	}{
		{"minio://h:9000/bkt/k", "bkt", "k", settings{host: "h:9000", secure: true}},
		{"minio://MinIO.Local/bucket/locks/a", "bucket", "locks/a", settings{host: "minio.local", secure: true}},
		{"minio://h:9000/bkt/a%3Fb%23c%2Fd", "bkt", "a?b#c/d", settings{host: "h:9000", secure: true}},
		{"minio://h:9000/bkt/k?secure=false&region=eu-west-1", "bkt", "k", settings{host: "h:9000", region: "eu-west-1"}},
		{"minio://AK:S%2Fx%40y@h:9000/bkt/k", "bkt", "k", settings{host: "h:9000", secure: true, accessKey: "AK", secretKey: "S/x@y"}},
		{"minio://[::1]:9000/bkt/k?secure=0", "bkt", "k", settings{host: "[::1]:9000"}},
	})
}

func TestOpenRejects(t *testing.T) {
	const secret = "s3cr3t"
	s3test.OpenRejects(t, minioDriver{}, secret, []struct{ DSN, Err string }{
		{"minio://h:9000/bkt", "missing key"},
		{"minio://h:9000/bkt/", "missing key"},
		{"minio://h:9000/", "missing bucket"},
		{"minio:///bkt/k", "missing host"},
		{"minio:h/bkt/k", "want minio://HOST[:PORT]/BUCKET/KEY"},
		{"s3://h/bkt/k", "scheme must be minio"},
		{"minio://h:9000/bkt/k?secure=maybe", "secure must be true or false"},
		{"minio://h:9000/bkt/k?sekure=false", `unknown DSN parameter "sekure"`},
		{"minio://h:9000/bkt/k?secure=false&region=eu%zz", `DSN parameter "region" has an invalid %-escape`},
		{"minio://h:9000/bkt/k#x", "unexpected '#'"},
		{"minio://h:9000/a..b/k", `bucket "a..b"`},
		{"minio://AK@h:9000/bkt/k", "both non-empty"},
		{"minio://:" + secret + "@h:9000/bkt/k", "both non-empty"},
		{"minio://AK:" + secret + "@h:bad/bkt/k", "invalid port"},
		{"minio://AK:" + secret + "@h:9000/bkt", "missing key"},
		{"minio://AK:" + secret + "@h:9000/bkt/k?x=1", `unknown DSN parameter "x"`},
		{"minio://AK:" + secret + "@h%zz/bkt/k", "invalid URL escape"},
	})
}

func TestSecretNeverShown(t *testing.T) {
	st, key, err := minioDriver{}.Open("minio://" + accessKey + ":" + secretKey + "@127.0.0.1:1/bkt/locks/a?secure=false&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Location(key); got != "minio://127.0.0.1:1/bkt/locks/a" {
		t.Errorf("Location = %q", got)
	}
	_, _, readErr := st.Read(context.Background(), key)
	_, writeErr := st.Write(context.Background(), key, []byte("x"), "e1")
	for _, s := range []string{
		st.Location(key), fmt.Sprint(st), fmt.Sprintf("%+v", st), fmt.Sprintf("%#v", st),
		readErr.Error(), writeErr.Error(),
	} {
		if strings.Contains(s, secretKey) {
			t.Errorf("%q reveals the secret", s)
		}
	}
}

func TestOpenSharesOneClientPerSettings(t *testing.T) {
	s3test.OpenSharesOneClientPerSettings(t, minioDriver{}, s3test.Sharing{
		DSN: func(i int) string {
			return fmt.Sprintf("minio://127.0.0.1:1/bucket-%d/locks/%d?secure=false&region=test-sharing", i%7, i)
		},
		Others: []string{
			"minio://127.0.0.1:1/bkt/k?secure=true&region=test-sharing",
			"minio://AK:other@127.0.0.1:1/bkt/k?secure=false&region=test-sharing",
		},
		Client: func(st driver.Store) any { return st.(*store).client },
		Built:  clients.Len,
	})
}

// suite runs the tests shared with the s3 driver on this driver. Its fakes
// check the Signature Version 4 of every request against secretKey, like a
// real server, and answer SignatureDoesNotMatch when it is wrong.
var suite = s3test.Suite{
	Open: func(t *testing.T, url string) driver.Store {
		t.Helper()
		host := strings.TrimPrefix(url, "http://")
		st, _, err := minioDriver{}.Open("minio://" + accessKey + ":" + secretKey + "@" + host + "/bkt/k?secure=false&region=us-east-1")
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
	Verify:   signedWith(secretKey),
	Bucket:   "bkt",
	Location: "/bkt/k",
	Secret:   secretKey,
	CheckPut: assertNoChecksums,
	// The driver adds If-Match to what minio-go sends, and has to sign the
	// request again: the fake answers SignatureDoesNotMatch otherwise.
	CheckReplace: func(t *testing.T, r s3test.Request) {
		if !strings.Contains(r.Header.Get("Authorization"), "if-match") {
			t.Errorf("If-Match is not among the signed headers: %s", r.Header.Get("Authorization"))
		}
	},
	WriteErrors: s3test.Msgs{
		"create-only on a present key": "write minio://127.0.0.1",
		"bad access key":               "access denied, check the credentials: InvalidAccessKeyId",
		"bad secret":                   "access denied, check the credentials: SignatureDoesNotMatch",
	},
	ReadErrors: s3test.Msgs{
		"missing key": "/bkt/k: object does not exist",
	},
	DeleteErrors: s3test.Msgs{
		"missing bucket": "delete minio://",
		"access denied":  "delete minio://",
	},
}

// signedWith returns a check that a request is signed with secret.
func signedWith(secret string) func(r *http.Request, body []byte) bool {
	return func(r *http.Request, body []byte) bool { return validSignature(r, body, secret) }
}

// validSignature checks an AWS Signature Version 4 Authorization header the
// way a server does, independently of minio-go's signer.
func validSignature(r *http.Request, body []byte, secret string) bool {
	fields := map[string]string{}
	rest, ok := strings.CutPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	if !ok {
		return false
	}
	for f := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) < 5 {
		return false
	}
	scope := cred[len(cred)-4:] // date, region, service, aws4_request
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if sum := sha256.Sum256(body); payloadHash != hex.EncodeToString(sum[:]) {
		return false
	}
	var canonical strings.Builder
	fmt.Fprintf(&canonical, "%s\n%s\n%s\n", r.Method, r.URL.EscapedPath(), r.URL.RawQuery)
	for h := range strings.SplitSeq(fields["SignedHeaders"], ";") {
		v := strings.Join(r.Header.Values(h), ",")
		if h == "host" {
			v = r.Host
		}
		fmt.Fprintf(&canonical, "%s:%s\n", h, strings.TrimSpace(v))
	}
	fmt.Fprintf(&canonical, "\n%s\n%s", fields["SignedHeaders"], payloadHash)
	canonicalSum := sha256.Sum256([]byte(canonical.String()))
	stringToSign := "AWS4-HMAC-SHA256\n" + r.Header.Get("X-Amz-Date") + "\n" +
		strings.Join(scope, "/") + "\n" + hex.EncodeToString(canonicalSum[:])

	key := []byte("AWS4" + secret)
	for _, s := range scope {
		key = hmacSHA256(key, s)
	}
	return hmac.Equal([]byte(fields["Signature"]), []byte(hex.EncodeToString(hmacSHA256(key, stringToSign))))
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// assertNoChecksums checks that the request carries no checksum that
// S3-compatible stores may reject, and is not a streaming upload.
func assertNoChecksums(t *testing.T, h http.Header) {
	t.Helper()
	for name := range h {
		if l := strings.ToLower(name); strings.HasPrefix(l, "x-amz-checksum-") ||
			l == "x-amz-sdk-checksum-algorithm" || l == "x-amz-trailer" || l == "x-amz-decoded-content-length" {
			t.Errorf("request carries header %s", name)
		}
	}
	if strings.HasPrefix(h.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		t.Errorf("request is a streaming upload: %s", h.Get("X-Amz-Content-Sha256"))
	}
}

// TestS3Compat runs the tests shared with the s3 driver.
func TestS3Compat(t *testing.T) { suite.Run(t) }

func TestCredentialsFromEnvironment(t *testing.T) {
	fake := s3test.Serve(t, signedWith(envSecret), s3test.Reply{Status: 200, ETag: `"e2"`})
	st, _, err := minioDriver{}.Open("minio://" + strings.TrimPrefix(fake.URL, "http://") + "/bkt/k?secure=false&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(context.Background(), "k", []byte("v"), "e1"); err != nil {
		t.Fatal(err)
	}
	if auth := fake.Seen()[0].Header.Get("Authorization"); !strings.Contains(auth, "Credential=ENVUSER/") {
		t.Errorf("request not signed with the environment's key: %s", auth)
	}
}

func TestSigningRegion(t *testing.T) {
	tests := []struct {
		auth   string
		region string
		ok     bool
	}{
		{"AWS4-HMAC-SHA256 Credential=AK/20250101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=ab", "eu-west-1", true},
		{"AWS4-HMAC-SHA256 Credential=A/K/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab", "us-east-1", true},
		{"AWS AK:signature", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		region, ok := signingRegion(tt.auth)
		if region != tt.region || ok != tt.ok {
			t.Errorf("signingRegion(%q) = %q, %v; want %q, %v", tt.auth, region, ok, tt.region, tt.ok)
		}
	}
}
