//go:build unix

package egress

import (
	"errors"
	"syscall"
)

// noSocketLeft reports whether the process can open no socket now, for
// want of a file descriptor.
func noSocketLeft() bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err == nil {
		syscall.Close(fd)
		return false
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
