package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// Options says how to dial and set up a connection.
type Options struct {
	Username     string
	Password     string
	DB           int
	TLSConfig    *tls.Config
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
}

// Dial connects to addr, authenticates and selects the database. Errors never
// contain the password.
func Dial(ctx context.Context, addr string, o Options) (*Conn, error) {
	d := net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	var nc net.Conn
	var err error
	if o.TLSConfig != nil {
		cfg := o.TLSConfig.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		td := tls.Dialer{NetDialer: &d, Config: cfg}
		nc, err = td.DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		if cerr := ctxerr.Of(ctx); cerr != nil { // the dialer says only "operation was canceled"
			return nil, fmt.Errorf("dial %s: %w (%w)", addr, cerr, err)
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := newConn(nc, setUpTimeout(ctx, o.ReadTimeout), o.WriteTimeout)
	c.addr = addr
	if err := c.handshake(ctx, o); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	c.readTimeout = o.ReadTimeout
	return c, nil
}

type replyBoundKey struct{}

// WithReplyBound has connections dialed for ctx wait for each reply of
// their set-up (AUTH, SELECT, PING) no longer than d, when that is shorter
// than their read timeout: a batch's own response timeout bounds the
// set-up of a connection it dials too (a server that accepts and never
// answers held such a batch for the read timeout).
func WithReplyBound(ctx context.Context, d time.Duration) context.Context {
	if d <= 0 {
		return ctx
	}
	return context.WithValue(ctx, replyBoundKey{}, d)
}

// setUpTimeout is the read timeout of a connection's set-up for ctx.
func setUpTimeout(ctx context.Context, readTimeout time.Duration) time.Duration {
	if d, ok := ctx.Value(replyBoundKey{}).(time.Duration); ok && (readTimeout <= 0 || d < readTimeout) {
		return d
	}
	return readTimeout
}

// Bound runs fn, which uses c, so that ctx ending breaks c at once: a
// server that accepted and never answers holds fn no longer than ctx
// allows (each reply is bounded by the read timeout besides). When ctx
// ended first the error wraps ctx's, and c must not be used again.
func (c *Conn) Bound(ctx context.Context, fn func() error) error {
	stop := context.AfterFunc(ctx, c.Abort)
	err := fn()
	if !stop() {
		if err == nil {
			return ctxerr.Of(ctx) // aborted as fn ended
		}
		return fmt.Errorf("%w (%w)", ctxerr.Of(ctx), err)
	}
	return err
}

// DialServing is Dial for a connection that carries batches: the server
// must be serving (see Serving), or the dial fails — nothing was sent.
func DialServing(ctx context.Context, addr string, o Options) (*Conn, error) {
	c, err := Dial(ctx, addr, o)
	if err != nil {
		return nil, err
	}
	c.readTimeout = setUpTimeout(ctx, o.ReadTimeout)
	if err := c.Serving(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	c.readTimeout = o.ReadTimeout
	return c, nil
}

// Serving asks PING, so that a server still loading its data (a restart)
// or busy with a script is found before a batch is written to it: a batch
// whose replies are off would have its commands refused unseen. Any other
// error reply (a user whose ACL forbids PING, a replica's MASTERDOWN) is
// left for the batch's own commands to meet.
func (c *Conn) Serving(ctx context.Context) error {
	err := c.Bound(ctx, func() error {
		_, err := c.Do("PING")
		if e, ok := err.(redis.Error); ok && !strings.HasPrefix(string(e), "LOADING") && !strings.HasPrefix(string(e), "BUSY") {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("not serving: PING: %w", err)
	}
	return nil
}

func (c *Conn) handshake(ctx context.Context, o Options) error {
	return c.Bound(ctx, func() error { return c.setUp(o) })
}

// setUp authenticates and selects the database as o asks.
func (c *Conn) setUp(o Options) error {
	if o.Password != "" || o.Username != "" {
		args := []any{o.Password}
		if o.Username != "" {
			args = []any{o.Username, o.Password}
		}
		if _, err := c.Do("AUTH", args...); err != nil {
			if _, ok := err.(redis.Error); ok {
				return fmt.Errorf("AUTH as %q refused: %w", userName(o.Username), err)
			}
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if o.DB != 0 {
		if _, err := c.Do("SELECT", o.DB); err != nil {
			return fmt.Errorf("SELECT %d: %w", o.DB, err)
		}
	}
	return nil
}

func userName(u string) string {
	if u == "" {
		return "default"
	}
	return u
}

// ServerInfo is what a node said about itself when first connected.
type ServerInfo struct {
	Version  [3]int   // redis_version, such as 7.0.15
	Cluster  bool     // cluster_enabled:1
	Replicas []string // addresses of the replicas online (INFO replication)
	// MaxBulkLen is proto-max-bulk-len: the longest argument the server
	// takes (0: unknown, the server refused CONFIG GET).
	MaxBulkLen int64
	// Proxy reports that the server closed the connection on INFO or
	// CONFIG instead of answering: a proxy such as twemproxy, which closes
	// on every command it does not forward. Nothing else is known about it
	// (version 0, standalone), the connection Info ran on is closed, and
	// commands it may refuse (CLIENT, MULTI, WAIT, …) must not be sent.
	Proxy bool
	// NoClientName reports that the server refused CLIENT SETNAME or
	// GETNAME (CLIENT renamed away, or not granted to the user).
	NoClientName bool
}

// ParseVersion reads redis_version from INFO server's text (zero when it
// is not there).
func ParseVersion(info string) (v [3]int) {
	if s, ok := infoField(info, "redis_version"); ok {
		for i, part := range strings.SplitN(s, ".", 3) {
			v[i], _ = strconv.Atoi(part)
		}
	}
	return v
}

// AtLeast reports whether the server's version is major.minor or later.
func (s ServerInfo) AtLeast(major, minor int) bool {
	return s.Version[0] > major || s.Version[0] == major && s.Version[1] >= minor
}

// Info asks the node for its version and whether it runs in cluster mode.
// A server that closes the connection on INFO or CONFIG is reported with
// Proxy set and a nil error; c is closed then.
func (c *Conn) Info() (ServerInfo, error) {
	var si ServerInfo
	text, err := redis.String(c.Do("INFO", "server"))
	if infoRefused(err) {
		// A user without INFO, or a server without it (renamed away, a
		// minimal stand-in): version unknown (features that need a version
		// check are refused), routed as a standalone server.
		return si, c.probeNames(&si)
	}
	if closedByPeer(err) {
		return ServerInfo{Proxy: true}, nil
	}
	if err != nil {
		return si, fmt.Errorf("INFO server: %w", err)
	}
	si.Version = ParseVersion(text)
	text, err = redis.String(c.Do("INFO", "cluster"))
	if err != nil && !infoRefused(err) {
		return si, fmt.Errorf("INFO cluster: %w", err)
	}
	v, _ := infoField(text, "cluster_enabled")
	si.Cluster = v == "1"
	text, err = redis.String(c.Do("INFO", "replication"))
	if err != nil && !infoRefused(err) {
		return si, fmt.Errorf("INFO replication: %w", err)
	}
	si.Replicas = onlineReplicas(text)
	kv, err := redis.Strings(c.Do("CONFIG", "GET", "proto-max-bulk-len"))
	if closedByPeer(err) {
		// INFO answered but CONFIG closed: a proxy that forwards INFO.
		// What INFO said stands; the connection is gone.
		si.Proxy = true
		return si, nil
	}
	if err == nil && len(kv) == 2 {
		si.MaxBulkLen, _ = strconv.ParseInt(kv[1], 10, 64)
	}
	return si, c.probeNames(&si)
}

// probeNames sets si.NoClientName when the server refuses to name the
// connection or to say its name (si.Proxy when it closes the connection
// on it). The connection has no name, so naming it "" changes nothing.
func (c *Conn) probeNames(si *ServerInfo) error {
	for _, args := range [][]any{{"SETNAME", ""}, {"GETNAME"}} {
		switch _, err := c.Do("CLIENT", args...); {
		case closedByPeer(err):
			si.Proxy = true
			return nil
		case errors.As(err, new(redis.Error)):
			si.NoClientName = true
			return nil
		case err != nil:
			return fmt.Errorf("CLIENT %v: %w", args[0], err)
		}
	}
	return nil
}

// closedByPeer reports whether err says the server closed the connection
// (end of stream, or a reset), as a proxy does on a command it does not
// forward, rather than answering an error, timing out or being aborted here.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// infoRefused reports whether err is the server refusing INFO for good: no
// permission (NOPERM), or no such command. Other error replies (LOADING,
// BUSY, …) say nothing of what the server is.
func infoRefused(err error) bool {
	e, ok := err.(redis.Error)
	return ok && (strings.HasPrefix(string(e), "NOPERM") || strings.HasPrefix(string(e), "ERR unknown command"))
}

// Replicas asks the server for its online replicas (INFO replication).
func (c *Conn) Replicas() ([]string, error) {
	text, err := redis.String(c.Do("INFO", "replication"))
	if err != nil {
		return nil, fmt.Errorf("INFO replication: %w", err)
	}
	return onlineReplicas(text), nil
}

// onlineReplicas parses INFO replication's "slaveN:ip=…,port=…,state=online" lines.
func onlineReplicas(text string) []string {
	var addrs []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "slave") || !strings.Contains(line, ":ip=") {
			continue
		}
		fields := map[string]string{}
		for _, kv := range strings.Split(line[strings.IndexByte(line, ':')+1:], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				fields[k] = v
			}
		}
		if fields["state"] == "online" {
			addrs = append(addrs, net.JoinHostPort(fields["ip"], fields["port"]))
		}
	}
	return addrs
}

func infoField(text, name string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v, true
		}
	}
	return "", false
}
