package drivertest_test

import "testing"

// TestMapStoreConformance runs the suite on the store of the package's
// example, as a driver's own tests do, so that the example shows a store
// that passes it.
func TestMapStoreConformance(t *testing.T) { conformance(t, newMapStore()) }
