package rbatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/internal/route"
)

// newClusterClient discovers a cluster from cfg.Addrs (CLUSTER SHARDS,
// falling back to CLUSTER SLOTS) and keeps a pool per node. The
// connections to a node the slot map lists as a replica send READONLY, so
// it serves the reads ReadFrom sends it; those to a primary do not, so one
// demoted before the client learns of it redirects reads (MOVED) rather
// than answering them from its copy.
func newClusterClient(ctx context.Context, cfg Config, opts pool.Options, info pool.ServerInfo, seed string) (*Client, error) {
	if cfg.DB != 0 {
		return nil, fmt.Errorf("rbatch: invalid config: DB %d: a cluster has only database 0", cfg.DB)
	}
	fetch := func(ctx context.Context, addr string) ([]route.ShardInfo, error) {
		return fetchShards(ctx, addr, opts)
	}
	makeNode := func(addr string) pool.Node { return newPool(addr, cfg.PoolSize, opts) }
	r, err := route.NewCluster(ctx, cfg.Addrs, fetch, makeNode)
	if err != nil {
		return nil, fmt.Errorf("rbatch: %w", err)
	}
	return &Client{router: r, cluster: true, info: info, readFrom: cfg.ReadFrom, readTimeout: cfg.ReadTimeout, streamBuffer: cfg.StreamBuffer, addr: seed,
		sharedLines: sharedLines(cfg)}, nil
}

// fetchShards asks one node for the cluster's shards.
func fetchShards(ctx context.Context, addr string, opts pool.Options) ([]route.ShardInfo, error) {
	conn, err := pool.Dial(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var shards []route.ShardInfo
	err = conn.Bound(ctx, func() error {
		shards, err = askShards(conn, addr, opts.TLSConfig != nil)
		return err
	})
	return shards, err
}

// askShards asks for CLUSTER SHARDS, or CLUSTER SLOTS before Redis 7.0.
func askShards(conn *pool.Conn, addr string, tls bool) ([]route.ShardInfo, error) {
	reply, err := conn.Do("CLUSTER", "SHARDS")
	if err == nil {
		return route.ParseShards(reply, tls)
	}
	if asRedisError(err) == nil {
		return nil, fmt.Errorf("%s: CLUSTER SHARDS: %w", addr, err)
	}
	reply, err = conn.Do("CLUSTER", "SLOTS")
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, errors.Join(err))
	}
	return route.ParseSlots(reply)
}
