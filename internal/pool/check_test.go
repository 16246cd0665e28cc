package pool_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/internal/redistest"
)

// Get hands out only idle connections whose socket looks alive: one the
// server closed (CLIENT KILL) is dropped and counted, and Get dials anew.
func TestGetDropsIdleConnectionsTheServerClosed(t *testing.T) {
	s := redistest.Standalone(t)
	p, dials := newPool(t, s, 2)
	ctx := context.Background()
	c1, err := p.Get(ctx)
	require.NoError(t, err)
	c2, err := p.Get(ctx)
	require.NoError(t, err)
	c1.Release(true)
	c2.Release(true)
	require.Equal(t, 2, p.Idle())

	admin := s.Conn(t)
	_, err = admin.Do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return connectedClients(t, s) <= 2 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(20 * time.Millisecond) // the FINs reach the pool's sockets

	c, err := p.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, p.Discarded(), "both idle connections were found closed")
	assert.Equal(t, int32(3), dials.Load(), "a fresh one was dialed")
	reply, err := c.(*pool.Conn).Do("PING")
	require.NoError(t, err)
	assert.Equal(t, "PONG", reply)
	c.Release(true)
}

// Bytes nobody asked for on an idle connection (a server's parting error,
// a late reply) would answer the next batch's first command: such a
// connection is dropped too.
func TestGetDropsIdleConnectionsWithUnexpectedBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := ln.Addr().String()
	p := pool.New(addr, 1, func(ctx context.Context) (*pool.Conn, error) { return pool.Dial(ctx, addr, opts) })
	defer p.Close()
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	c.Release(true)
	server := <-accepted
	defer server.Close()
	_, err = server.Write([]byte("-ERR idle for too long\r\n"))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)

	c2, err := p.Get(context.Background())
	require.NoError(t, err)
	assert.NotSame(t, c, c2, "a new connection")
	assert.Equal(t, 1, p.Discarded())
	c2.Release(false)
	if next := <-accepted; next != nil {
		next.Close()
	}
}
