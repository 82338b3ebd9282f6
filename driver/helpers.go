package driver

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// CheckQuery returns an error naming every parameter in q that is not in
// allowed, or nil. Drivers call it so that a misspelt DSN option fails loudly
// instead of being ignored.
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
