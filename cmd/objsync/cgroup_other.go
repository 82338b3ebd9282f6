//go:build unix && !linux

package main

import (
	"errors"
	"syscall"

	"github.com/objsync/objsync"
)

// workCgroup is Linux's: elsewhere the command runs in objsync's own, and
// the lock records nothing of its processes.
type workCgroup struct{}

func newWorkCgroup() (*workCgroup, error) { return nil, errors.New("cgroups are a Linux feature") }

func (w *workCgroup) options() []objsync.Option {
	return []objsync.Option{objsync.WithoutProcessCheck()}
}

func (w *workCgroup) setAttr(*syscall.SysProcAttr) {}
func (w *workCgroup) kill()                        {}
func (w *workCgroup) release()                     {}

func (w *workCgroup) startError(err error) error { return err }

func runGuardian() int { return exitUsage }
