package pool

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The read timeout bounds a reply as a whole: one that trickles in a byte
// at a time, each within the timeout but all together past it, fails.
func TestReceiveBoundsTheWholeReply(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		server.Write([]byte("$10\r\n"))
		for range 11 {
			time.Sleep(40 * time.Millisecond)
			if _, err := server.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	c := newConn(client, 150*time.Millisecond, time.Second)
	defer c.Close()
	start := time.Now()
	_, err := c.Receive(0)
	require.Error(t, err, "a reply taking 440 ms passed a 150 ms timeout")
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "%v", err)
	assert.Less(t, time.Since(start), 400*time.Millisecond)
}

// Replies already read ahead need no socket read, and a reply that comes
// in well within the timeout passes, whatever the replies before it took.
func TestReceiveTimeoutIsPerReply(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		for range 4 {
			time.Sleep(60 * time.Millisecond)
			if _, err := server.Write([]byte(":1\r\n:2\r\n")); err != nil {
				return
			}
		}
	}()
	c := newConn(client, 150*time.Millisecond, time.Second)
	defer c.Close()
	for k := range 8 {
		r, err := c.Receive(0)
		require.NoError(t, err, "reply %d", k)
		assert.Equal(t, int64(1+k%2), r)
	}
}

// After a failed read the connection is closed: a late reply must not
// answer the next command.
func TestReceiveErrorClosesTheConnection(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	c := newConn(client, 50*time.Millisecond, time.Second)
	_, err := c.Receive(0)
	require.Error(t, err)
	assert.True(t, c.Aborted())
	// The server's late reply goes nowhere: the pipe is closed.
	server.SetWriteDeadline(time.Now().Add(time.Second))
	_, err = server.Write([]byte("+OK\r\n"))
	assert.ErrorIs(t, err, io.ErrClosedPipe)

	client2, server2 := net.Pipe()
	defer server2.Close()
	go func() {
		buf := make([]byte, 64)
		server2.Read(buf) // the command; no answer
	}()
	c2 := newConn(client2, 50*time.Millisecond, time.Second)
	_, err = c2.Do("CONFIG", "GET", "proto-max-bulk-len")
	require.Error(t, err)
	assert.True(t, c2.Aborted(), "Do's timeout closes the connection too")
}

// A write the server does not take is bounded by the write timeout, though
// the deadline is set only as bytes go to the socket.
func TestWriteTimeoutBoundsAStalledWrite(t *testing.T) {
	client, server := net.Pipe() // nobody reads the server side
	defer server.Close()
	c := newConn(client, time.Second, 100*time.Millisecond)
	defer c.Close()
	_, err := c.Write(make([]byte, 10)) // only buffered
	require.NoError(t, err)
	start := time.Now()
	err = c.Flush()
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "%v", err)
	assert.Less(t, time.Since(start), time.Second)
}
