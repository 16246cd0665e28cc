// Package pool dials Redis connections, keeps them per node, and hands them
// to batches. A connection goes back to its pool only when clean.
package pool

import (
	"bufio"
	"net"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/batch"
)

// writeBufferSize is the connection's write buffer: commands smaller than this
// are gathered into one write; larger spans go to the socket directly.
const writeBufferSize = 64 << 10

// Conn is one connection to a node. Its writer side (Write, Flush) and reader
// side (Receive) may each be used by one goroutine at a time, concurrently;
// Abort may be called from anywhere.
type Conn struct {
	nc           net.Conn
	bw           *bufio.Writer
	rc           redis.Conn // reads replies from nc; its own writer is used only by Do during the handshake
	readTimeout  time.Duration
	writeTimeout time.Duration

	abortOnce sync.Once
	aborted   chan struct{}
}

var _ batch.Conn = (*Conn)(nil)

func newConn(nc net.Conn, readTimeout, writeTimeout time.Duration) *Conn {
	return &Conn{
		nc:           nc,
		bw:           bufio.NewWriterSize(nc, writeBufferSize),
		rc:           redis.NewConn(nc, readTimeout, writeTimeout),
		readTimeout:  readTimeout,
		writeTimeout: writeTimeout,
		aborted:      make(chan struct{}),
	}
}

// Do runs one command and waits for its reply; for the handshake and checks
// made while no batch uses the connection.
func (c *Conn) Do(cmd string, args ...any) (any, error) { return c.rc.Do(cmd, args...) }

func (c *Conn) setWriteDeadline() {
	if c.writeTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
}

// Write buffers p, sending it when the buffer fills.
func (c *Conn) Write(p []byte) (int, error) {
	c.setWriteDeadline()
	return c.bw.Write(p)
}

// Flush sends what is buffered.
func (c *Conn) Flush() error {
	c.setWriteDeadline()
	return c.bw.Flush()
}

// Receive reads the next reply; an error reply comes back as a redis.Error value.
func (c *Conn) Receive(timeout time.Duration) (any, error) {
	if timeout == 0 {
		timeout = c.readTimeout
	}
	reply, err := redis.ReceiveWithTimeout(c.rc, timeout)
	if e, ok := err.(redis.Error); ok {
		return e, nil
	}
	return reply, err
}

// Abort closes the socket: pending and later calls fail.
func (c *Conn) Abort() {
	c.abortOnce.Do(func() {
		close(c.aborted)
		c.nc.Close()
	})
}

// Aborted reports whether Abort was called.
func (c *Conn) Aborted() bool {
	select {
	case <-c.aborted:
		return true
	default:
		return false
	}
}

// Close closes the connection.
func (c *Conn) Close() error {
	c.Abort()
	return nil
}
