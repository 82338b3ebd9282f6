//go:build unix && !linux

package main

import "syscall"

// setDeathSignal does nothing: the death signal is Linux's. Elsewhere a
// command whose objsync was killed runs on until its lease is taken over.
func setDeathSignal(*syscall.SysProcAttr) {}
