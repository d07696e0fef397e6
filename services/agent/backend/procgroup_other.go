//go:build unix && !linux

package backend

import (
	"errors"
	"syscall"
)

// groupAlive reports whether process group pgid has a member (zombies included).
func groupAlive(pgid int) bool {
	return !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}
