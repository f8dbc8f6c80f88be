//go:build unix

package server

import (
	"errors"
	"net"
	"syscall"
)

// connClosed reports whether the client closed conn (or reset it), without
// reading anything from it: a byte of a next request stays where it is.
// A connection that cannot be asked (TLS, a wrapper) is taken as open.
func connClosed(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || errors.Is(err, syscall.ECONNRESET)
		return true // never wait for data
	})
	return closed
}
