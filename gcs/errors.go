package gcs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/objsync/objsync/driver"
)

// readError maps a read error to the driver's vocabulary.
func (s *store) readError(key string, err error) error {
	if errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("read %s: %w", s.Location(key), driver.ErrNotExist)
	}
	// The content did not match the checksum sent with it: a transfer
	// gone wrong, or (fake-gcs-server) an object replaced while it was
	// read, whose generation may then belong to other content. Only a
	// read again can be trusted. The client has no sentinel for it.
	if strings.Contains(err.Error(), "storage: bad CRC") {
		return driver.Retryable(fmt.Errorf("read %s: the content did not match its checksum: %w", s.Location(key), err))
	}
	return s.classify("read", key, err)
}

// writeError maps a write error to the driver's vocabulary. A failed
// ifGenerationMatch is 412 even when the object is absent, so a 404 can only
// mean that the bucket is missing.
func (s *store) writeError(key string, err error) error {
	switch httpStatus(err) {
	case http.StatusPreconditionFailed:
		return fmt.Errorf("write %s: %w", s.Location(key), driver.ErrPrecondition)
	case http.StatusNotFound:
		return fmt.Errorf("write %s: bucket %q does not exist: %w", s.Location(key), s.bucket, err)
	}
	return s.classify("write", key, err)
}

// clientError reports a client that could not be built, most often for
// want of credentials.
func (s *store) clientError(op, key string, err error) error {
	if noCreds := s.noCredentials(op, key, err); noCreds != nil {
		return noCreds
	}
	return fmt.Errorf("%s %s: creating the storage client: %w", op, s.Location(key), err)
}

// classify names the errors that are not about the object itself, and marks
// the transient ones.
func (s *store) classify(op, key string, err error) error {
	if noCreds := s.noCredentials(op, key, err); noCreds != nil {
		return noCreds
	}
	loc := s.Location(key)
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch status := httpStatus(err); {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: %w", op, loc, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("%s %s: access denied, check the credentials: %w", op, loc, err)
	case errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial"):
		err = fmt.Errorf("%s %s: endpoint unreachable: %w", op, loc, err)
	default:
		err = fmt.Errorf("%s %s: %w", op, loc, err)
	}
	// The client's own judgement: 408, 429, 5xx, reset or refused
	// connections, unexpected EOF.
	if storage.ShouldRetry(err) {
		return driver.Retryable(err)
	}
	return err
}

// httpStatus returns the HTTP status of the answer that caused err, or 0.
func httpStatus(err error) int {
	var apiErr *googleapi.Error
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	return 0
}
