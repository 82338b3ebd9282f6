package main

import "syscall"

// setDeathSignal has the kernel send the command SIGTERM if objsync dies
// without stopping it (kill -9, the OOM killer): nothing would renew its
// lease any more. The guardian then kills its whole group with SIGKILL
// (guard.go); this reaches the command even if the guardian was killed
// too.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGTERM }
