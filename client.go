package rbatch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/internal/route"
)

// Config says where Redis is and how to connect.
type Config struct {
	Addrs        []string      // "host:port" seeds; a cluster is detected (INFO cluster)
	Username     string        // ACL user (empty: default user)
	Password     string        // never appears in an error
	DB           int           // standalone only
	TLSConfig    *tls.Config   // nil: plain TCP
	DialTimeout  time.Duration // 0: 5s
	ReadTimeout  time.Duration // bound on each reply (after a blocking command's own timeout); 0: 30s; WithResponseTimeout overrides it per batch
	WriteTimeout time.Duration // bound on each write; 0: 30s
	PoolSize     int           // max connections per node; 0: 64 (as Redisson)
	// ReadFrom is where read-only work may go: Primary (default), Replica,
	// PreferReplica. A batch's reads for a primary it also writes to stay
	// on that primary, so that they see its writes (as in Redisson); a
	// batch with WithSync or WithSyncAOF reads from primaries only.
	ReadFrom ReadFrom
	// StreamBuffer bounds the bytes of encoded commands a Streaming batch
	// holds (queued and not yet answered) before queueing blocks; 0: 8 MiB.
	StreamBuffer int
	// SharedConns is how many connections per node carry the small
	// batches of every caller together (0: 2; at most half of PoolSize).
	// With more than one, the last carries only batches that end in WAIT
	// or WAITAOF (WithSync, WithSyncAOF), so that a WAIT the replicas are
	// slow to satisfy holds up no other batch; the others share the rest.
	// Those batches do wait for each other: their WAITs run one after
	// another on their connection (a batch with WithResponseTimeout keeps
	// a connection of its own, its WAIT beside the others).
	// More than two helps when small batches fetch large values: a reply
	// being read holds up the batches behind it on its connection. They
	// are taken from the pool and count in its figures as Shared
	// (PoolStats.Shared), not InUse.
	SharedConns int
	// DisableSharing gives every batch a pooled connection of its own.
	DisableSharing bool
}

const (
	defaultDialTimeout = 5 * time.Second
	defaultIOTimeout   = 30 * time.Second
	defaultPoolSize    = 64
	defaultStreamBuf   = 8 << 20
)

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case len(cfg.Addrs) == 0:
		return cfg, errors.New("rbatch: invalid config: no addresses in Config.Addrs")
	case cfg.DB < 0:
		return cfg, fmt.Errorf("rbatch: invalid config: DB %d is negative", cfg.DB)
	case cfg.PoolSize < 0:
		return cfg, fmt.Errorf("rbatch: invalid config: PoolSize %d is negative", cfg.PoolSize)
	case cfg.StreamBuffer < 0:
		return cfg, fmt.Errorf("rbatch: invalid config: StreamBuffer %d is negative", cfg.StreamBuffer)
	case cfg.SharedConns < 0:
		return cfg, fmt.Errorf("rbatch: invalid config: SharedConns %d is negative", cfg.SharedConns)
	case cfg.DialTimeout < 0 || cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0:
		return cfg, errors.New("rbatch: invalid config: negative timeout")
	case cfg.ReadFrom < Primary || cfg.ReadFrom > PreferReplica:
		return cfg, fmt.Errorf("rbatch: invalid config: unknown ReadFrom %d", int(cfg.ReadFrom))
	}
	for _, a := range cfg.Addrs {
		if a == "" {
			return cfg, errors.New("rbatch: invalid config: empty address in Config.Addrs")
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = defaultIOTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = defaultIOTimeout
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = defaultPoolSize
	}
	if cfg.StreamBuffer == 0 {
		cfg.StreamBuffer = defaultStreamBuf
	}
	return cfg, nil
}

// Client runs batches against one Redis server (a cluster comes through the
// same routing). A Client is safe for concurrent use; make one per
// application and Close it at the end.
type Client struct {
	router   route.Router[pool.Node]
	cluster  bool
	info     pool.ServerInfo // what the first server said when connected
	readFrom ReadFrom
	// readTimeout is Config.ReadTimeout (0 for a redigo pool's client).
	readTimeout time.Duration
	closed      atomic.Bool
	held        heldBatches
	hooks       hooks
	// streamBuffer is Config.StreamBuffer.
	streamBuffer int
	// sharedLines is how many shared connections each node gets (0: none).
	sharedLines int
	// addr is the configured address the client connected through ("" for
	// a redigo pool's client): BatchInfo.Addr.
	addr string
	// fromPool is a redigo pool's client's pool, whose server's version
	// is learnt when first needed (version).
	fromPool    *redis.Pool
	poolVersion struct {
		sync.Mutex
		known bool
		v     [3]int
	}
}

// heldBatches are the RedisReadAtomic and RedisWriteAtomic batches that
// hold a connection in MULTI until they are executed or discarded; Close
// discards those still open.
type heldBatches struct {
	mu     sync.Mutex // guards the fields below
	closed bool       // Close took the list: no batch may join it
	m      map[*Batch]struct{}
}

// hold records that b opens a Redis-side queue; false once the client is
// closing (then b must not open one).
func (c *Client) hold(b *Batch) bool {
	h := &c.held
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if h.m == nil {
		h.m = map[*Batch]struct{}{}
	}
	h.m[b] = struct{}{}
	return true
}

// release forgets b once it ended.
func (c *Client) release(b *Batch) {
	h := &c.held
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, b)
}

// closeHeld closes the list of held batches and returns them.
func (c *Client) closeHeld() []*Batch {
	h := &c.held
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	out := make([]*Batch, 0, len(h.m))
	for b := range h.m {
		out = append(out, b)
	}
	return out
}

// closeDiscardTimeout bounds how long Close waits for the DISCARDs of the
// abandoned Redis-side batches (sent side by side) before it closes their
// connections.
const closeDiscardTimeout = 5 * time.Second

// NewClient connects to the first reachable address of cfg.Addrs, checks the
// credentials, and returns a client whose connections are pooled per node.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := pool.Options{
		Username: cfg.Username, Password: cfg.Password, DB: cfg.DB, TLSConfig: cfg.TLSConfig,
		DialTimeout: cfg.DialTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
	}
	var errs []error
	for _, addr := range cfg.Addrs {
		conn, err := pool.Dial(ctx, addr, opts)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var info pool.ServerInfo
		err = conn.Bound(ctx, func() (err error) {
			info, err = conn.Info()
			return err
		})
		if err == nil && info.Proxy && cfg.TLSConfig != nil {
			// No proxy rbatch knows speaks TLS; a TLS server that wants a
			// client certificate closes the connection so.
			err = errors.New("the server closed the TLS connection on INFO: does it require a client certificate (tls-auth-clients)?")
		} else if err == nil && info.Proxy {
			// The proxy closed conn on INFO or CONFIG: take a fresh one.
			conn.Close()
			if conn, err = redialProxy(ctx, addr, opts); err != nil {
				errs = append(errs, err)
				if ctx.Err() != nil {
					break
				}
				continue
			}
		}
		if err != nil {
			conn.Close()
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if info.Cluster {
			conn.Close()
			return newClusterClient(ctx, cfg, opts, info, addr)
		}
		p := newPool(addr, cfg.PoolSize, opts)
		if conn.Serving(ctx) == nil { // else a batch dials anew, once the server serves
			p.AddIdle(conn)
		} else {
			conn.Close()
		}
		var router route.Router[pool.Node] = route.Single[pool.Node]{Primary: p}
		if cfg.ReadFrom != Primary {
			router = route.NewStandalone[pool.Node](p, info.Replicas, func(ctx context.Context) ([]string, error) {
				return replicasOf(ctx, p)
			}, func(addr string) pool.Node { return newPool(addr, cfg.PoolSize, opts) })
		}
		return &Client{router: router, info: info, readFrom: cfg.ReadFrom, readTimeout: cfg.ReadTimeout, streamBuffer: cfg.StreamBuffer, addr: addr,
			sharedLines: sharedLines(cfg)}, nil
	}
	return nil, fmt.Errorf("rbatch: cannot connect: %w", errors.Join(errs...))
}

// replicasOf asks the primary for its online replicas (INFO replication),
// on one of its pooled connections.
func replicasOf(ctx context.Context, p *pool.Pool) ([]string, error) {
	l, err := p.Get(ctx)
	if err != nil {
		return nil, err
	}
	conn := l.(*pool.Conn)
	var replicas []string
	err = conn.Bound(ctx, func() (err error) {
		replicas, err = conn.Replicas()
		return err
	})
	l.Release(err == nil)
	return replicas, err
}

func newPool(addr string, size int, opts pool.Options) *pool.Pool {
	return pool.New(addr, size, func(ctx context.Context) (*pool.Conn, error) {
		return pool.DialServing(ctx, addr, opts)
	})
}

// NewClientFromPool returns a client that runs batches on connections of an
// existing redigo pool to a standalone server. With such a pool, a cancelled
// context interrupts a batch only at its next reply (or the pool's read
// timeout), a connection that carried a WithSkipResult batch is closed
// rather than put back (redigo would wait on it for the replies Redis left
// out), and Stats has what the redigo pool counts. The server's version is
// asked (INFO server, within 2 s) by NewBatch the first time a batch needs
// it, WithSyncAOF's; while it cannot be had, WAITAOF is sent and a server
// without it fails the sync with ErrUnsupported after the commands. The
// pool stays the caller's: Client.Close stops the client's batches but
// leaves the pool open, and closing the pool first makes later batches
// fail, not sent, with its error.
func NewClientFromPool(p *redis.Pool) *Client {
	return &Client{router: route.Single[pool.Node]{Primary: pool.RedigoNode{Pool: p}}, info: pool.ServerInfo{Version: anyVersion},
		streamBuffer: defaultStreamBuf, fromPool: p}
}

// versionAsk bounds the INFO a redigo pool's client asks for its server's
// version.
const versionAsk = 2 * time.Second

// anyVersion stands for a version not known: new enough for every feature,
// which the server itself then refuses if it must (WAITAOF unknown there
// ends ErrUnsupported after the commands, as syncFailed says).
var anyVersion = [3]int{99}

// version returns the server's version, asking a redigo pool's server
// once (until it answers or refuses INFO); anyVersion while it cannot be
// had.
func (c *Client) version() [3]int {
	if c.fromPool == nil {
		return c.info.Version
	}
	c.poolVersion.Lock()
	defer c.poolVersion.Unlock()
	if c.poolVersion.known {
		return c.poolVersion.v
	}
	ctx, cancel := context.WithTimeout(context.Background(), versionAsk)
	defer cancel()
	conn, err := c.fromPool.GetContext(ctx)
	if err != nil {
		return anyVersion
	}
	defer conn.Close()
	text, err := redis.String(redis.DoWithTimeout(conn, versionAsk, "INFO", "server"))
	switch {
	case errors.As(err, new(redis.Error)): // INFO refused (ACL): it will be refused again
		c.poolVersion.v, c.poolVersion.known = anyVersion, true
	case err != nil:
		return anyVersion
	default:
		c.poolVersion.v, c.poolVersion.known = pool.ParseVersion(text), true
	}
	return c.poolVersion.v
}

// NewBatch starts an empty batch. Invalid options are reported by Execute.
func (c *Client) NewBatch(opts ...Option) *Batch {
	return newBatch(c, opts)
}

// Close closes the client's idle connections (not those of a pool given to
// NewClientFromPool, which stays the caller's); connections in use by running
// batches are closed as those finish, a shared connection once every batch
// on it got its replies (Close does not wait for them). Batches executed
// afterwards, and those still waiting for a connection, fail with ErrClosed,
// nothing sent. A RedisReadAtomic or RedisWriteAtomic batch that was filled
// but neither executed nor discarded is discarded by Close (DISCARD, within
// a few seconds, else its connection is closed; at once when it is still
// waiting for a connection): nothing of it is applied,
// its futures resolve with ErrDiscarded, and its Execute or Discard then
// returns ErrAlreadyExecuted.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	// The pools first: a batch waiting for a connection fails now, and
	// does not take the one an abandoned batch's DISCARD gives back.
	// (Connections in use stay usable until released; then they close.)
	err := c.router.Close()
	// All at once, under one deadline: a frozen server costs one timeout,
	// not one per abandoned batch.
	ctx, cancel := context.WithTimeout(context.Background(), closeDiscardTimeout)
	var wg sync.WaitGroup
	for _, b := range c.closeHeld() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Discard(ctx) // ErrAlreadyExecuted when it is running: it ends by itself
		}()
	}
	wg.Wait()
	cancel()
	return err
}
