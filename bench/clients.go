package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/rbatch/rbatch"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// The data every client sends. Members (SADD) and keys (SET) are
// fixed-width substrings of one big string made before any timing, so that
// no client pays for formatting them and none of them allocates per item.
const (
	setKey    = "bench:set"
	itemWidth = 10                 // "m:%08d" / "k:%08d"
	setValue  = "value-0123456789" // 16 bytes, every SET
)

type dataset struct {
	n       int
	members string
	keys    string
	fly     bool // keys are made as they are needed
}

func newDataset(n int, op opKind, fly bool) *dataset {
	if fly {
		return &dataset{n: n, fly: true}
	}
	b := make([]byte, 0, n*itemWidth)
	format := "m:%08d"
	if op == opSET {
		format = "k:%08d"
	}
	for i := 0; i < n; i++ {
		b = fmt.Appendf(b, format, i)
	}
	if op == opSET {
		return &dataset{n: n, keys: string(b)}
	}
	return &dataset{n: n, members: string(b)}
}

func (d *dataset) member(i int) string { return d.members[i*itemWidth : (i+1)*itemWidth] }
func (d *dataset) key(i int) string {
	if d.fly {
		return "k:" + strconv.Itoa(i)
	}
	return d.keys[i*itemWidth : (i+1)*itemWidth]
}

// runner is one client library, connected, able to send one case's batch.
// run builds the batch, executes it and checks every reply for an error;
// all of that is timed. It stores in *sent when the built batch was handed
// to the library to send (left zero when sending starts right away).
type runner interface {
	run(ctx context.Context, cs caseSpec, d *dataset, sent *time.Time) error
	close()
}

// errNA marks a client that cannot run a case at all (reported as n/a).
type errNA struct{ reason string }

func (e errNA) Error() string { return "n/a (" + e.reason + ")" }

const ioTimeout = 5 * time.Minute

func newRunner(ctx context.Context, client string, cs caseSpec, addrs []string) (runner, error) {
	switch client {
	case "rbatch":
		c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: addrs, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout})
		if err != nil {
			if cs.cluster {
				return nil, errNA{"cluster support not built: " + err.Error()}
			}
			return nil, err
		}
		return &rbatchRunner{c: c}, nil
	case "redigo":
		if cs.cluster {
			return nil, errNA{"redigo has no cluster support"}
		}
		// No I/O timeouts: redigo would set a deadline per Send/Receive.
		// The parent bounds every run and kills a stuck child.
		c, err := redigo.Dial("tcp", addrs[0], redigo.DialConnectTimeout(5*time.Second))
		if err != nil {
			return nil, err
		}
		return &redigoRunner{c: c}, nil
	case "go-redis":
		if cs.cluster {
			c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs,
				ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, MaxRetries: -1, DisableIdentity: true})
			if err := c.Ping(ctx).Err(); err != nil {
				return nil, err
			}
			return &goredisRunner{pipe: c.Pipeline, tx: c.TxPipeline, closer: c.Close}, nil
		}
		// MaxRetries -1: a failed pipeline is not re-sent (no duplicates).
		c := goredis.NewClient(&goredis.Options{Addr: addrs[0],
			ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, MaxRetries: -1, DisableIdentity: true})
		if err := c.Ping(ctx).Err(); err != nil {
			return nil, err
		}
		return &goredisRunner{pipe: c.Pipeline, tx: c.TxPipeline, closer: c.Close}, nil
	case "rueidis":
		c, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress:       addrs,
			DisableCache:      true,
			ForceSingleClient: !cs.cluster,
			ConnWriteTimeout:  ioTimeout,
			DisableRetry:      true,
		})
		if err != nil {
			return nil, err
		}
		return &rueidisRunner{c: c}, nil
	}
	return nil, fmt.Errorf("unknown client %q", client)
}

// rbatch, through its public API only.
type rbatchRunner struct{ c *rbatch.Client }

func (r *rbatchRunner) close() { _ = r.c.Close() }

func (r *rbatchRunner) run(ctx context.Context, cs caseSpec, d *dataset, sent *time.Time) error {
	var opts []rbatch.Option
	switch cs.mode {
	case modeMulti:
		opts = append(opts, rbatch.WithMode(rbatch.InMemoryAtomic))
	case modeSkip:
		opts = append(opts, rbatch.WithSkipResult())
	case modeStream:
		opts = append(opts, rbatch.WithMode(rbatch.Streaming))
	case modeStreamSkip:
		opts = append(opts, rbatch.WithMode(rbatch.Streaming), rbatch.WithSkipResult())
	}
	b := r.c.NewBatch(opts...)
	if cs.op == opSADD {
		s := b.Set(setKey)
		for i := 0; i < d.n; i++ {
			s.AddAsync(d.member(i))
		}
	} else {
		for i := 0; i < d.n; i++ {
			b.Bucket(d.key(i)).SetAsync(setValue)
		}
	}
	*sent = time.Now()
	res, err := b.Execute(ctx)
	if err != nil {
		return err
	}
	switch cs.mode {
	case modeSkip:
	case modeStream, modeStreamSkip:
		if got := res.Counts.Applied + res.Counts.Skipped; got != d.n {
			return fmt.Errorf("rbatch: %d commands applied or skipped, want %d", got, d.n)
		}
	default:
		if len(res.Responses) != d.n {
			return fmt.Errorf("rbatch: %d responses, want %d", len(res.Responses), d.n)
		}
	}
	return nil
}

// redigo: a hand-written pipeline on one connection, a writer goroutine
// (Send + Flush) and a reader (Receive) running at once.
type redigoRunner struct{ c redigo.Conn }

func (r *redigoRunner) close() { _ = r.c.Close() }

func (r *redigoRunner) run(ctx context.Context, cs caseSpec, d *dataset, sent *time.Time) error {
	multi := cs.mode == modeMulti
	werr := make(chan error, 1)
	go func() {
		c := r.c
		if multi {
			if err := c.Send("MULTI"); err != nil {
				werr <- err
				return
			}
		}
		for i := 0; i < d.n; i++ {
			var err error
			if cs.op == opSADD {
				err = c.Send("SADD", setKey, d.member(i))
			} else {
				err = c.Send("SET", d.key(i), setValue)
			}
			if err != nil {
				werr <- err
				return
			}
		}
		if multi {
			if err := c.Send("EXEC"); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.Flush()
	}()
	replies := d.n
	if multi {
		replies += 2
	}
	var first error
	for i := 0; i < replies; i++ {
		v, err := r.c.Receive()
		if err != nil {
			if _, ok := err.(redigo.Error); !ok {
				return err // connection broken
			}
			if first == nil {
				first = err
			}
			continue
		}
		if multi && i == replies-1 {
			arr, ok := v.([]any)
			if !ok || len(arr) != d.n {
				return fmt.Errorf("redigo: EXEC gave %T (len %d), want %d replies", v, len(arr), d.n)
			}
			for _, e := range arr {
				if e, ok := e.(redigo.Error); ok && first == nil {
					first = e
				}
			}
		}
	}
	if err := <-werr; err != nil {
		return err
	}
	return first
}

// go-redis v9: Pipeline() / TxPipeline() and Exec.
type goredisRunner struct {
	pipe, tx func() goredis.Pipeliner
	closer   func() error
}

func (r *goredisRunner) close() { _ = r.closer() }

func (r *goredisRunner) run(ctx context.Context, cs caseSpec, d *dataset, sent *time.Time) error {
	p := r.pipe()
	if cs.mode == modeMulti {
		p = r.tx()
	}
	if cs.op == opSADD {
		for i := 0; i < d.n; i++ {
			p.SAdd(ctx, setKey, d.member(i))
		}
	} else {
		for i := 0; i < d.n; i++ {
			p.Set(ctx, d.key(i), setValue, 0)
		}
	}
	*sent = time.Now()
	cmds, err := p.Exec(ctx) // the first failed command's error, if any
	if err != nil {
		return err
	}
	if len(cmds) < d.n {
		return fmt.Errorf("go-redis: %d results, want %d", len(cmds), d.n)
	}
	return nil
}

// rueidis: DoMulti with B()...Build(); MULTI … EXEC in one DoMulti.
type rueidisRunner struct{ c rueidis.Client }

func (r *rueidisRunner) close() { r.c.Close() }

func (r *rueidisRunner) run(ctx context.Context, cs caseSpec, d *dataset, sent *time.Time) error {
	multi := cs.mode == modeMulti
	cmds := make(rueidis.Commands, 0, d.n+2)
	if multi {
		cmds = append(cmds, r.c.B().Multi().Build())
	}
	if cs.op == opSADD {
		for i := 0; i < d.n; i++ {
			cmds = append(cmds, r.c.B().Sadd().Key(setKey).Member(d.member(i)).Build())
		}
	} else {
		for i := 0; i < d.n; i++ {
			cmds = append(cmds, r.c.B().Set().Key(d.key(i)).Value(setValue).Build())
		}
	}
	if multi {
		cmds = append(cmds, r.c.B().Exec().Build())
	}
	*sent = time.Now()
	resps := r.c.DoMulti(ctx, cmds...)
	if len(resps) != len(cmds) {
		return fmt.Errorf("rueidis: %d results, want %d", len(resps), len(cmds))
	}
	var first error
	for _, res := range resps {
		if err := res.Error(); err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	if multi {
		arr, err := resps[len(resps)-1].ToArray()
		if err != nil {
			return err
		}
		if len(arr) != d.n {
			return fmt.Errorf("rueidis: EXEC gave %d replies, want %d", len(arr), d.n)
		}
		for _, m := range arr {
			if err := m.Error(); err != nil {
				return err
			}
		}
	}
	return nil
}
