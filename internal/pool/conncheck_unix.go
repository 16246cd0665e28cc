//go:build unix

package pool

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
)

// errUnexpectedBytes says an idle connection holds bytes nobody asked for:
// a late reply, or a server's goodbye such as "-ERR max idle time".
var errUnexpectedBytes = errors.New("idle connection holds unexpected bytes")

// checkIdle looks at an idle connection's socket without blocking and
// without taking anything from it: a server that closed the connection
// while it sat in the pool (its timeout setting, CLIENT KILL, a restart)
// has left an end of file or a reset there, and a connection with bytes
// waiting would hand them to the wrong command. nil means it looks alive.
func checkIdle(nc net.Conn) error {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn() // a TLS close_notify or any record is unexpected too
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil // not a socket: nothing to look at
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var peekErr error
	var one [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			peekErr = errUnexpectedBytes
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			// Nothing there: alive.
		case err != nil:
			peekErr = err
		default:
			peekErr = io.EOF
		}
		return true // never wait for the socket to become readable
	})
	if err != nil {
		return err
	}
	return peekErr
}
