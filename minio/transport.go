package minio

import (
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/signer"
)

// unquoteIfMatch is the client's transport. It sends If-Match ETags without
// their quotes: minio-go's SetMatchETag always quotes them, and Ceph RGW
// answers a quoted ETag with 412 even when it matches (Ceph bug 64439), while
// MinIO and S3 accept both forms. If-Match is a signed header, so the request
// is signed again, with the same credentials and scope, after the change.
type unquoteIfMatch struct {
	next  http.RoundTripper
	creds *credentials.Credentials
}

func (t *unquoteIfMatch) RoundTrip(req *http.Request) (*http.Response, error) {
	etag := req.Header.Get("If-Match")
	if len(etag) < 2 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		return t.next.RoundTrip(req)
	}
	auth := req.Header.Get("Authorization")
	region, signedV4 := signingRegion(auth)
	if auth != "" && !signedV4 {
		return t.next.RoundTrip(req) // not a signature this transport knows how to redo
	}

	r := req.Clone(req.Context())
	r.Header.Set("If-Match", etag[1:len(etag)-1])
	if signedV4 {
		// The client signed with these credentials a moment ago, so they
		// are cached: this fetches nothing.
		v, err := t.creds.GetWithContext(nil)
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		r.Header.Del("Authorization")
		r = signer.SignV4(*r, v.AccessKeyID, v.SecretAccessKey, v.SessionToken, region)
	}
	return t.next.RoundTrip(r)
}

// signingRegion returns the region in the credential scope of a Signature
// Version 4 Authorization header:
//
//	AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=..., Signature=...
func signingRegion(auth string) (string, bool) {
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 Credential=")
	if !ok {
		return "", false
	}
	credential, _, _ := strings.Cut(rest, ",")
	// The access key may hold '/', so count the scope from the end:
	// date/region/service/aws4_request.
	parts := strings.Split(credential, "/")
	if len(parts) < 5 {
		return "", false
	}
	return parts[len(parts)-3], true
}
