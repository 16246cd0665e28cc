package route

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Standalone routes everything to one primary and read-only work to a
// replica of it, which it learns again (fetch) once the last look is older
// than Recheck: a replica that attached later is then used, and one that
// left — detached, or promoted with REPLICAOF NO ONE, its data going its
// own way — is no longer read from.
type Standalone[N Node] struct {
	primary  N
	fetch    func(ctx context.Context) ([]string, error) // the online replicas' addresses
	makeNode NodeMaker[N]

	mu       sync.RWMutex // guards the fields below
	replica  N            // the zero N: none
	nodes    map[string]N // every replica node made, by address
	gen      uint64
	loadedAt time.Time

	refreshMu  sync.Mutex  // one refresh at a time
	refreshing atomic.Bool // a look started by Replica is under way
}

// Recheck is how old the last look at a standalone primary's replicas may
// grow before read-only work asks for a new one (in the background).
const Recheck = time.Second

// lookBound bounds a look started in the background.
const lookBound = 5 * time.Second

// NewStandalone routes to primary, with replicas the addresses its last
// INFO replication listed; fetch lists them anew, makeNode makes a node.
func NewStandalone[N Node](primary N, replicas []string, fetch func(ctx context.Context) ([]string, error), makeNode NodeMaker[N]) *Standalone[N] {
	s := &Standalone[N]{primary: primary, fetch: fetch, makeNode: makeNode, nodes: map[string]N{}}
	s.apply(replicas)
	return s
}

func (s *Standalone[N]) Route(string) (N, error)  { return s.primary, nil }
func (s *Standalone[N]) RouteSlot(int) (N, error) { return s.primary, nil }
func (s *Standalone[N]) Node(string) N            { return s.primary }

// Replica returns the replica for read-only work of p (the primary), or
// the zero N; a last look older than Recheck starts a new one.
func (s *Standalone[N]) Replica(p N) N {
	var none N
	if p != s.primary {
		return none
	}
	s.mu.RLock()
	r, age, gen := s.replica, time.Since(s.loadedAt), s.gen
	s.mu.RUnlock()
	if age > Recheck && s.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer s.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), lookBound)
			defer cancel()
			_ = s.Refresh(ctx, gen) // a failed look keeps what was known
		}()
	}
	return r
}

// Nodes lists the primary and every replica node made.
func (s *Standalone[N]) Nodes() []N {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []N{s.primary}
	for _, n := range s.nodes {
		out = append(out, n)
	}
	return out
}

func (s *Standalone[N]) Generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

func (s *Standalone[N]) Age() time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return time.Since(s.loadedAt)
}

// Refresh looks at the primary's replicas again, unless someone did since
// generation gen.
func (s *Standalone[N]) Refresh(ctx context.Context, gen uint64, _ ...string) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if s.Generation() != gen {
		return nil
	}
	replicas, err := s.fetch(ctx)
	if err != nil {
		return err
	}
	s.apply(replicas)
	return nil
}

// apply takes the first of replicas as the one read from (none when empty).
func (s *Standalone[N]) apply(replicas []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r N
	if len(replicas) > 0 {
		var ok bool
		if r, ok = s.nodes[replicas[0]]; !ok {
			r = s.makeNode(replicas[0])
			s.nodes[replicas[0]] = r
		}
	}
	s.replica = r
	s.gen++
	s.loadedAt = time.Now()
}

// Close closes every node.
func (s *Standalone[N]) Close() error {
	for _, n := range s.Nodes() {
		n.Close()
	}
	return nil
}
