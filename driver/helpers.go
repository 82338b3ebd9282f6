package driver

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// ParseQuery parses the query string of a DSN (a URL's RawQuery) strictly
// and checks its parameter names with CheckQuery. Unlike url.URL.Query,
// which drops the pairs it cannot decode, it refuses a query with an
// invalid %-escape or a ';' separator: a DSN whose endpoint parameter
// vanished would send the lock, and the credentials, to the provider's
// default endpoint. Its errors name the parameter, never a value, which
// may hold a secret.
func ParseQuery(rawQuery string, allowed ...string) (url.Values, error) {
	q := url.Values{}
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if pair == "" {
			continue
		}
		if strings.Contains(pair, ";") {
			return nil, errors.New("the DSN's query uses ';', which is no separator: use '&', or write %3B for a ';' in a value")
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, errors.New("a parameter name in the DSN's query has an invalid %-escape")
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("DSN parameter %q has an invalid %%-escape (write %%25 for a literal %%)", name)
		}
		q.Add(name, value)
	}
	if err := CheckQuery(q, allowed...); err != nil {
		return nil, err
	}
	return q, nil
}

// Redact returns dsn with the password of its user information, if any,
// replaced by "xxxxx", for the messages of drivers that quote a DSN.
func Redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		return u.Redacted()
	}
	// Not a URL, but it may still hold SCHEME://USER:PASSWORD@.
	_, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	userinfo, _, ok := strings.Cut(rest, "@")
	if !ok || !strings.Contains(userinfo, ":") {
		return dsn
	}
	user, _, _ := strings.Cut(userinfo, ":")
	return strings.Replace(dsn, userinfo+"@", user+":xxxxx@", 1)
}

// CheckQuery returns an error naming every parameter in q that is not in
// allowed, or nil, so that a misspelt DSN option fails loudly instead of
// being ignored. ParseQuery calls it; drivers should call ParseQuery.
func CheckQuery(q url.Values, allowed ...string) error {
	var unknown []string
	for name := range q {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	if len(allowed) == 0 {
		return fmt.Errorf("unknown DSN parameter %s (this driver takes no parameters)", quoteAll(unknown))
	}
	return fmt.Errorf("unknown DSN parameter %s (known: %s)",
		quoteAll(unknown), strings.Join(allowed, ", "))
}

func quoteAll(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(quoted, ", ")
}

// Shared builds a value once per key and hands the same value to every later
// caller with that key. Drivers use it to share one client, and so one
// connection pool, among all the DSNs that name the same endpoint with the
// same settings. The zero value is ready to use.
type Shared[K comparable, V any] struct {
	mu     sync.Mutex
	values map[K]V
}

// Get returns the value for key, calling build if there is none yet. A failed
// build is not remembered.
func (s *Shared[K, V]) Get(key K, build func() (V, error)) (V, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.values[key]; ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return v, err
	}
	if s.values == nil {
		s.values = make(map[K]V)
	}
	s.values[key] = v
	return v, nil
}

// Len returns how many values have been built.
func (s *Shared[K, V]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}
