package rbatch

import (
	"context"
	"fmt"
	"strings"

	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/queue"
)

// A proxy such as twemproxy forwards plain keyed commands and closes the
// client's connection on the ones it does not take (CLIENT, MULTI, WAIT,
// INFO, CONFIG, SCRIPT, …) instead of answering an error: whatever was in
// flight on that connection ends unknown. NewClient recognises such a server
// by the closed connection on INFO or CONFIG (pool.ServerInfo.Proxy), and
// batches then keep to what the proxy takes:
//
//   - WithSkipResult sends the commands plainly and reads their replies
//     (an error reply fails its command, the others end skipped) instead
//     of wrapping them in CLIENT REPLY OFF … ON;
//   - scripts go as EVAL (routed by their first key) instead of SCRIPT LOAD
//     and EVALSHA; a script without keys is refused with ErrUnsupported;
//   - the atomic modes (MULTI), WithSync (WAIT) and WithSyncAOF (WAITAOF)
//     are refused with ErrUnsupported before anything is sent;
//   - EXISTS with several keys, which the proxy would send whole to the
//     server of the first, is split into one EXISTS per key (proxyWhole);
//   - a command the proxy closes on (proxyCloses: the stream commands,
//     MSETNX, …) fails alone with ErrUnsupported as it is queued, not sent,
//     and the rest of the batch runs;
//   - an error the proxy answers for its own connection to Redis (see
//     proxyFault) ends its command unknown, not failed.

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

// proxyCommandRefusal returns why command name cannot go through the
// client's server, a proxy that closes the connection on it, wrapping
// ErrUnsupported; nil when it can (or the server is no proxy).
func (c *Client) proxyCommandRefusal(q *queue.Queue, i int) error {
	if !c.info.Proxy {
		return nil
	}
	name := q.Name(i)
	switch {
	case proxyCloses[name]:
		return fmt.Errorf("rbatch: %s cannot go through the server, a proxy that closes the connection on it: %w", name, ErrUnsupported)
	case proxyScripts[name] && len(q.Bytes(i)) > 0: // (none: it failed to encode, and goes nowhere)
		if args := q.Args(i); len(args) < 2 || string(args[1]) == "0" {
			return fmt.Errorf("rbatch: %s without keys cannot go through the server, a proxy that routes a script by its first key and closes the connection on one without: %w", name, ErrUnsupported)
		}
	}
	return nil
}

// proxyScripts are the commands whose second argument counts their keys:
// twemproxy routes them by the first key, and closes the connection on
// one with none.
var proxyScripts = map[string]bool{"EVAL": true, "EVALSHA": true}

// proxyCloses are the commands twemproxy (nutcracker 0.5.0, checked with
// redis-cli) closes the connection on, among those rbatch's objects send
// and those b.Do is most asked for. (The commands the modes would send —
// MULTI, WAIT, CLIENT REPLY, SCRIPT LOAD — are kept off its wire by
// proxyRefusal and by sending scripts as EVAL; COMMAND, forwarded bare but
// closed on with a subcommand, is left to its outcome.)
var proxyCloses = map[string]bool{
	// Streams: it takes none of their commands.
	"XADD": true, "XLEN": true, "XRANGE": true, "XREVRANGE": true, "XREAD": true, "XREADGROUP": true,
	"XDEL": true, "XTRIM": true, "XGROUP": true, "XINFO": true, "XACK": true, "XPENDING": true,
	"XCLAIM": true, "XAUTOCLAIM": true, "XSETID": true,
	// Commands on several keys it does not take.
	"MSETNX": true, "RENAME": true, "RENAMENX": true, "BITOP": true, "SINTERCARD": true,
	// Commands on no key, or on the server.
	"INFO": true, "CONFIG": true, "CLIENT": true, "DBSIZE": true, "TIME": true, "SCRIPT": true,
	"ECHO": true, "KEYS": true, "SCAN": true, "RANDOMKEY": true, "LASTSAVE": true, "FLUSHDB": true,
	"FLUSHALL": true, "OBJECT": true, "READONLY": true, "READWRITE": true, "ASKING": true,
}

// proxyWhole are the multi-key commands twemproxy sends whole to the
// server of their first key, so that a server answers for keys it does not
// hold (EXISTS k1 k2 counts only those of k1's server): rbatch splits them
// into a command per key (see splitMultiKey). It splits DEL, UNLINK,
// TOUCH, MGET and MSET per server itself.
var proxyWhole = map[string]bool{"EXISTS": true}

// proxyLost is the cause of a command whose reply is an error the proxy made
// for its own connection to Redis: the command may have been applied.
type proxyLost struct{ msg string }

func (e *proxyLost) Error() string {
	return "the proxy lost its connection to Redis: " + e.msg
}

// proxyFault reports whether an error reply is one a proxy answers for its
// own connection to Redis rather than Redis's: twemproxy answers "ERR" and
// the system's text for the error (a timeout, a reset). Such a command may
// have reached Redis and been applied, so it ends unknown — except where the
// proxy never forwarded it: it could not connect (refused), or the server
// is ejected (host down), and then the reply stands as a failure.
func proxyFault(msg string) bool {
	text, ok := strings.CutPrefix(msg, "ERR ")
	return ok && proxyLostTexts[text]
}

// proxyLostTexts are the system errors (as Linux words them) a proxy
// answers when its connection to Redis failed with requests on it.
var proxyLostTexts = map[string]bool{
	"Connection timed out":                true,
	"Connection reset by peer":            true,
	"Broken pipe":                         true,
	"Transport endpoint is not connected": true,
	"Software caused connection abort":    true,
	"Resource temporarily unavailable":    true,
	"Network is unreachable":              true,
	"No route to host":                    true,
	"Bad file descriptor":                 true,
	"Input/output error":                  true,
	"unknown":                             true, // twemproxy's words for a connection closed with no error
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
