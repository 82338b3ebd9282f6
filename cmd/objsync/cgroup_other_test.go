//go:build unix && !linux

package main

import "testing"

// withoutCgroups is nil: objsync runs no cgroups here anyway.
func withoutCgroups(*testing.T) []string { return nil }
