//go:build unix

package pool

import (
	"net"
	"syscall"
)

// tryWriter writes to a TCP socket without waiting for room in it: what
// the socket takes now, and no more. It is made once per connection, so
// that a write allocates nothing. A TLS connection has none: its records
// cannot be cut where the socket fills.
type tryWriter struct {
	rc  syscall.RawConn // nil: the socket cannot be written this way
	fn  func(fd uintptr) bool
	p   []byte // being written
	n   int    // of p, taken by the socket
	err error
}

func newTryWriter(nc net.Conn) *tryWriter {
	w := &tryWriter{}
	if sc, ok := nc.(syscall.Conn); ok { // *net.TCPConn, not *tls.Conn
		w.rc, _ = sc.SyscallConn()
	}
	w.fn = func(fd uintptr) bool {
		for w.n < len(w.p) {
			m, err := syscall.Write(int(fd), w.p[w.n:])
			if m > 0 {
				w.n += m
			}
			switch {
			case err == syscall.EINTR:
			case err == syscall.EAGAIN:
				return true // full: never wait for room
			case err != nil:
				w.err = err
				return true
			case m <= 0:
				return true
			}
		}
		return true
	}
	return w
}

// write hands p to the socket; ok is false when it cannot be written this
// way (nothing was written).
func (w *tryWriter) write(p []byte) (n int, ok bool, err error) {
	if w.rc == nil {
		return 0, false, nil
	}
	w.p, w.n, w.err = p, 0, nil
	if rerr := w.rc.Write(w.fn); rerr != nil && w.err == nil {
		w.err = rerr // closed
	}
	n, err = w.n, w.err
	w.p, w.err = nil, nil
	return n, true, err
}
