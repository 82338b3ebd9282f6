package objsync_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync"
	_ "github.com/objsync/objsync/minio"
	_ "github.com/objsync/objsync/s3"
)

// TestSecretsNeverShown: with credentials in the environment, in a minio
// DSN's user information and in an AWS profile, nothing a failing run says
// (errors, debug logs, String) contains any of them. The endpoint refuses
// connections, so that every path reports a failure; no traffic leaves
// loopback.
func TestSecretsNeverShown(t *testing.T) {
	const envSecret, dsnSecret, profileSecret = "envSecretValue123", "dsnSecretValue456", "profileSecretValue789"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	config := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(config, []byte("[profile ops]\naws_access_key_id = AKPROFILE\naws_secret_access_key = "+profileSecret+"\nregion = us-east-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", config)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", config)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", envSecret)
	t.Setenv("MINIO_ROOT_USER", "AKENV")
	t.Setenv("MINIO_ROOT_PASSWORD", envSecret)

	var said bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&said, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, tc := range []struct{ driver, dsn string }{
		{"minio", "minio://AKDSN:" + dsnSecret + "@" + addr + "/bucket/lock?secure=false&region=us-east-1"},
		{"minio", "minio://" + addr + "/bucket/lock?secure=false&region=us-east-1"}, // credentials from the environment
		{"s3", "s3://bucket/lock?endpoint=http://" + addr + "&region=us-east-1"},
		{"s3", "s3://bucket/lock?endpoint=http://" + addr + "&region=us-east-1&profile=ops"},
		{"minio", "minio://AKDSN:" + dsnSecret + "@" + addr + "/bucket/?secure=maybe"}, // a bad DSN
	} {
		m, err := objsync.Open(tc.driver, tc.dsn, objsync.WithLogger(logger), objsync.WithBackoff(time.Millisecond, 10*time.Millisecond))
		if err != nil {
			said.WriteString(err.Error() + "\n")
			continue
		}
		said.WriteString(m.String() + "\n")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = m.Lock(ctx, time.Second)
		cancel()
		said.WriteString(errString(err) + "\n")
		_, _, err = m.TryLock(context.Background(), time.Second)
		said.WriteString(errString(err) + "\n")
		_, err = m.Inspect(context.Background())
		said.WriteString(errString(err) + "\n")
		_, err = m.Break(context.Background())
		said.WriteString(errString(err) + "\n")
		said.WriteString(errString(m.Close()) + "\n")
	}
	if !strings.Contains(said.String(), "connection refused") {
		t.Fatalf("the runs did not fail as planned:\n%s", said.String())
	}
	for _, secret := range []string{envSecret, dsnSecret, profileSecret} {
		if strings.Contains(said.String(), secret) {
			t.Errorf("a secret was shown:\n%s", said.String())
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
