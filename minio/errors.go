package minio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/objsync/objsync/driver"
)

// readError maps a GetObject error to the driver's vocabulary.
func (s *store) readError(key string, err error) error {
	resp := minio.ToErrorResponse(err)
	if resp.Code == "NoSuchKey" || (resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket") {
		return fmt.Errorf("read %s: %w", s.Location(key), driver.ErrNotExist)
	}
	return s.classify("read", key, err)
}

// writeError maps a PutObject error to the driver's vocabulary.
func (s *store) writeError(key string, ifVersion driver.Version, err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case errors.Is(err, driver.ErrPrecondition):
		return fmt.Errorf("write %s: %w", s.Location(key), err)
	case resp.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("write %s: %w", s.Location(key), driver.ErrPrecondition)
	// S3 answers an If-Match write to a missing key with 404, not 412.
	case ifVersion != "" && resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket":
		return fmt.Errorf("write %s: object does not exist: %w", s.Location(key), driver.ErrPrecondition)
	}
	return s.classify("write", key, err)
}

// classify names the errors that are not about the object itself, and marks
// the transient ones.
func (s *store) classify(op, key string, err error) error {
	loc := s.Location(key)
	resp := minio.ToErrorResponse(err)
	if resp.Code != "" {
		// ErrorResponse's text is the server's message alone: add the code.
		err = fmt.Errorf("%s: %w", resp.Code, err)
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch code := resp.Code; {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: %w", op, loc, err)
	case code == "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %q does not exist: %w", op, loc, s.bucket, err)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
		code == "ExpiredToken" || code == "InvalidToken" ||
		resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		if s.client.chain != nil && s.client.chain.anonymous.Load() {
			return s.noCredentials(op, key, err)
		}
		return fmt.Errorf("%s %s: access denied, check the credentials: %w", op, loc, err)
	case code == "ConditionalRequestConflict":
		// Only left after the driver's own retries.
		return driver.Retryable(fmt.Errorf("%s %s: conflicting concurrent writes: %w", op, loc, err))
	case errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial"):
		err = fmt.Errorf("%s %s: endpoint unreachable: %w", op, loc, err)
		if dnsErr != nil && dnsErr.IsNotFound {
			return err // a misspelt host name will not heal
		}
		return driver.Retryable(err)
	}
	err = fmt.Errorf("%s %s: %w", op, loc, err)
	if isTransient(resp, err) {
		return driver.Retryable(err)
	}
	return err
}

// isTransient reports whether err is worth retrying: a 5xx or 429 answer, a
// throttling or timeout code, or a request that failed in transit (reset or
// refused connection, timeout, connection closed early). TLS and protocol
// mismatches are not: only a change of configuration fixes them.
func isTransient(resp minio.ErrorResponse, err error) bool {
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true
	case resp.Code == "SlowDown" || resp.Code == "RequestTimeout" || resp.Code == "Throttling":
		return true
	case resp.Code != "":
		return false
	}
	var opErr *net.OpError
	var netErr net.Error
	return (errors.As(err, &opErr) && opErr.Op != "remote error") || // not a TLS alert
		(errors.As(err, &netErr) && netErr.Timeout()) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		// minio-go replaces an EOF from the transport with this text.
		strings.Contains(err.Error(), "Connection closed by foreign host")
}
