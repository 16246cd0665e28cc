//go:build unix

package pool

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
)

// idleCheck looks at an idle connection's socket without blocking and
// without taking anything from it: a server that closed the connection
// while it sat in the pool (its timeout setting, CLIENT KILL, a restart)
// has left an end of file or a reset there, and a connection with bytes
// waiting would hand them to the wrong command. It is made once per
// connection, so that a check allocates nothing.
type idleCheck struct {
	rc   syscall.RawConn // nil: not a socket, nothing to look at
	peek func(fd uintptr) bool
	err  error // the last peek's finding
	one  [1]byte
}

func newIdleCheck(nc net.Conn) *idleCheck {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn() // a TLS close_notify or any record is unexpected too
	}
	k := &idleCheck{}
	if sc, ok := nc.(syscall.Conn); ok {
		k.rc, _ = sc.SyscallConn()
	}
	k.peek = func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), k.one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			k.err = errUnexpectedBytes
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			k.err = nil // nothing there: alive
		case err != nil:
			k.err = err
		default:
			k.err = io.EOF
		}
		return true // never wait for the socket to become readable
	}
	return k
}

// check returns nil when the socket looks alive. It takes only the
// descriptor, not the read side, so a reader waiting on the socket (a
// shared connection's) neither blocks it nor is disturbed. Not safe for
// concurrent use with itself: the pool checks a connection no one else
// uses, a shared connection's one flusher checks it.
func (k *idleCheck) check() error {
	if k.rc == nil {
		return nil
	}
	if err := k.rc.Control(func(fd uintptr) { k.peek(fd) }); err != nil {
		return err
	}
	return k.err
}
