package pool_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/internal/redistest"
)

// nutcracker closes the connection on INFO: Info reports a proxy, no error.
func TestInfoThroughTwemproxy(t *testing.T) {
	p := redistest.NewTwemproxy(t, redistest.Standalone(t))
	c, err := pool.Dial(context.Background(), p.Addr, opts)
	require.NoError(t, err)
	defer c.Close()
	info, err := c.Info()
	require.NoError(t, err)
	assert.Equal(t, pool.ServerInfo{Proxy: true}, info)
	assert.True(t, c.Aborted(), "the closed connection is not reused")
}

// A proxy that forwards INFO but closes on CONFIG keeps what INFO said.
func TestInfoClosedOnConfig(t *testing.T) {
	f := redistest.NewFake(t, func(cmd []string) string {
		if strings.EqualFold(cmd[0], "CONFIG") {
			return redistest.Hangup
		}
		return redistest.DefaultReply(cmd)
	})
	c, err := pool.Dial(context.Background(), f.Addr, opts)
	require.NoError(t, err)
	defer c.Close()
	info, err := c.Info()
	require.NoError(t, err)
	assert.True(t, info.Proxy)
	assert.Equal(t, [3]int{7, 0, 15}, info.Version)
}

// An error reply to CONFIG is no proxy: only the size limit stays unknown.
func TestInfoConfigRefused(t *testing.T) {
	f := redistest.NewFake(t, func(cmd []string) string {
		if strings.EqualFold(cmd[0], "CONFIG") {
			return "-NOPERM no CONFIG for you\r\n"
		}
		return redistest.DefaultReply(cmd)
	})
	c, err := pool.Dial(context.Background(), f.Addr, opts)
	require.NoError(t, err)
	defer c.Close()
	info, err := c.Info()
	require.NoError(t, err)
	assert.False(t, info.Proxy)
	assert.Zero(t, info.MaxBulkLen)
	assert.False(t, c.Aborted())
}

// A server without INFO (renamed away, a minimal stand-in) is a standalone
// server of unknown version, as one whose user may not run it; an error
// reply that says nothing of the server (BUSY) still fails Info.
func TestInfoUnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		reply string
		ok    bool
	}{
		{"-ERR unknown command 'INFO', with args beginning with: 'server' \r\n", true},
		{"-NOPERM this user has no permissions to run the 'info' command\r\n", true},
		{"-BUSY Redis is busy running a script.\r\n", false},
	} {
		f := redistest.NewFake(t, func(cmd []string) string {
			if strings.EqualFold(cmd[0], "INFO") {
				return tc.reply
			}
			return redistest.DefaultReply(cmd)
		})
		c, err := pool.Dial(context.Background(), f.Addr, opts)
		require.NoError(t, err)
		info, err := c.Info()
		c.Close()
		if !tc.ok {
			assert.ErrorContains(t, err, "BUSY")
			continue
		}
		require.NoError(t, err, tc.reply)
		assert.Equal(t, pool.ServerInfo{}, info, "standalone, version unknown")
	}
}
