package azblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/objsync/objsync/driver"
)

// The error codes that the driver tells apart.
const (
	codeBlobNotFound      = string(bloberror.BlobNotFound)
	codeContainerNotFound = string(bloberror.ContainerNotFound)
	codeBlobAlreadyExists = string(bloberror.BlobAlreadyExists)
	codeConditionNotMet   = string(bloberror.ConditionNotMet)
)

// leaseCodes are Azure's answers to a write on a blob that someone leased.
var leaseCodes = []bloberror.Code{bloberror.LeaseIDMissing, bloberror.LeaseIDMismatchWithBlobOperation}

// readError maps a Get Blob error to the driver's vocabulary. A missing
// container reads as a missing blob, as Azure answers both with 404, but the
// message names the container.
func (s *store) readError(key string, err error) error {
	switch {
	case errorCode(err) == codeContainerNotFound:
		return fmt.Errorf("read %s: container %q does not exist: %w", s.Location(key), s.container, driver.ErrNotExist)
	case statusCode(err) == http.StatusNotFound:
		return fmt.Errorf("read %s: %w", s.Location(key), driver.ErrNotExist)
	}
	return s.classify("read", key, err)
}

// writeError maps a Put Blob error to the driver's vocabulary.
func (s *store) writeError(key string, ifVersion driver.Version, err error) error {
	loc := s.Location(key)
	switch code := errorCode(err); {
	case errors.Is(err, driver.ErrPrecondition):
		return fmt.Errorf("write %s: %w", loc, err)
	// Azure refuses a create-only write on a present blob with 409, not 412.
	case ifVersion == "" && code == codeBlobAlreadyExists:
		return fmt.Errorf("write %s: the blob exists: %w", loc, driver.ErrPrecondition)
	case code == codeConditionNotMet:
		return fmt.Errorf("write %s: %w", loc, driver.ErrPrecondition)
	case ifVersion != "" && code == codeBlobNotFound:
		return fmt.Errorf("write %s: the blob does not exist: %w", loc, driver.ErrPrecondition)
	}
	return s.classify("write", key, err)
}

// classify names the errors that are not about the blob's state.
func (s *store) classify(op, key string, err error) error {
	loc := s.Location(key)
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch status := statusCode(err); {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: %w", op, loc, err)
	case errorCode(err) == codeContainerNotFound:
		return fmt.Errorf("%s %s: container %q does not exist: %w", op, loc, s.container, err)
	case bloberror.HasCode(err, leaseCodes...):
		return fmt.Errorf("%s %s: the blob is leased by another client (objsync takes no leases; break the lease): %w", op, loc, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("%s %s: access denied, check the credentials (%s): %w", op, loc, s.client.source, err)
	case status >= 500 || status == http.StatusTooManyRequests:
		return driver.Retryable(fmt.Errorf("%s %s: %w", op, loc, err))
	case errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial"):
		return driver.Retryable(fmt.Errorf("%s %s: endpoint unreachable: %w", op, loc, err))
	case status == 0 && transient(err):
		return driver.Retryable(fmt.Errorf("%s %s: %w", op, loc, err))
	}
	return fmt.Errorf("%s %s: %w", op, loc, err)
}

// transient reports whether err, which came with no answer, is one that
// may not happen again: a timeout, a reset connection, an answer cut short.
func transient(err error) bool {
	var netErr net.Error
	return (errors.As(err, &netErr) && netErr.Timeout()) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// errorCode returns the Azure error code in err ("BlobNotFound"...), or "".
func errorCode(err error) string {
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		return respErr.ErrorCode
	}
	return ""
}

// statusCode returns the HTTP status of the answer that caused err, or 0.
func statusCode(err error) int {
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		return respErr.StatusCode
	}
	return 0
}
