package rbatch

import (
	"context"
	"fmt"

	"github.com/rbatch/rbatch/internal/pool"
)

// A proxy such as twemproxy forwards plain keyed commands and closes the
// client's connection on the ones it does not take (CLIENT, MULTI, WAIT,
// INFO, CONFIG, SCRIPT, …) instead of answering an error: whatever was in
// flight on that connection ends unknown. NewClient recognises such a server
// by the closed connection on INFO or CONFIG (pool.ServerInfo.Proxy), and
// batches then keep to what the proxy takes:
//
//   - WithSkipResult sends the commands plainly and reads and drops their
//     replies instead of wrapping them in CLIENT REPLY OFF … ON;
//   - scripts go as EVAL (routed by their first key) instead of SCRIPT LOAD
//     and EVALSHA; a script without keys is refused with ErrUnsupported;
//   - the atomic modes (MULTI), WithSync (WAIT) and WithSyncAOF (WAITAOF)
//     are refused with ErrUnsupported before anything is sent.

// proxyRefusal returns why a batch with options o cannot run through a
// proxy, wrapping ErrUnsupported; nil when it can.
func proxyRefusal(o BatchOptions) error {
	var what string
	switch {
	case o.Mode.atomic():
		what = o.Mode.String() + " needs MULTI"
	case o.SyncAOF:
		what = "WithSyncAOF needs WAITAOF"
	case o.Sync:
		what = "WithSync needs WAIT"
	default:
		return nil
	}
	return fmt.Errorf("rbatch: %s, and the server is a proxy that closes the connection on it: %w", what, ErrUnsupported)
}

// redialProxy replaces the connection a proxy closed on INFO or CONFIG with
// a fresh one, which must answer PING: a server that closes on everything
// (a TLS port spoken to in plain TCP) is no proxy but a failure to connect.
func redialProxy(ctx context.Context, addr string, opts pool.Options) (*pool.Conn, error) {
	conn, err := pool.Dial(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	var reply any
	err = conn.Bound(ctx, func() (err error) { // ctx ends the wait for PONG
		reply, err = conn.Do("PING")
		return err
	})
	if err != nil || reply != "PONG" {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("answered %v", reply)
		}
		return nil, fmt.Errorf("%s: closed the connection on INFO, then PING failed: %w", addr, err)
	}
	return conn, nil
}
