package redistest

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

const (
	// ClusterNodeTimeout is the cluster-node-timeout of cluster nodes, in
	// milliseconds. A killed primary is replaced a few seconds after it.
	ClusterNodeTimeout = 2000
	// ClusterTimeout bounds how long the cluster helpers wait for the
	// cluster to form, converge after a migration or fail over.
	ClusterTimeout = 30 * time.Second

	// NumSlots is the number of hash slots of a Redis Cluster.
	NumSlots = 16384

	clusterPrimaries = 3
)

// Cluster is a Redis Cluster of three primaries with one replica each, all
// on 127.0.0.1. Primary i serves the slot range redis-cli would give it
// (0-5460, 5461-10922, 10923-16383) and Replicas[i] replicates Primaries[i].
//
// Failover and KillPrimary update Primaries and Replicas to the new roles,
// so Primaries[i] and Replicas[i] stay a pair (a killed primary's replica
// becomes Primaries[i] and leaves Replicas, shrinking it). The helpers that
// change the topology (Failover, KillPrimary and the slot migration helpers)
// must not run concurrently with other methods of the same Cluster.
type Cluster struct {
	// Primaries are the live primaries, in slot-range order at start.
	Primaries []*Server
	// Replicas are the live replicas that are attached to a primary.
	Replicas []*Server

	ids       map[*Server]string  // node ID of every node ever started
	primaryOf map[*Server]*Server // replica -> its primary
	all       []*Server           // every node, for Close

	closeOnce sync.Once
	closeErr  error
}

// StartCluster starts six cluster nodes in parallel, assigns the slots to
// three of them, makes the other three their replicas and waits until every
// node reports cluster_state:ok and sees every replica attached. Extra args
// are passed to every node. The caller must call Close.
func StartCluster(args ...string) (*Cluster, error) {
	return startCluster(nil, args)
}

// startCluster is StartCluster; if certs is not nil, every node is TLS-only
// (see startWith) and also uses TLS for the cluster bus and replication.
func startCluster(certs *TLSCerts, args []string) (*Cluster, error) {
	const n = 2 * clusterPrimaries
	nodes := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = startWith(certs, 1, func(dir string, ports []int) []string {
				nodeArgs := []string{
					"--cluster-enabled", "yes",
					"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
					"--cluster-node-timeout", strconv.Itoa(ClusterNodeTimeout),
					"--cluster-port", strconv.Itoa(ports[1]),
					// A replica may always take over, however long its
					// primary has been gone.
					"--cluster-replica-validity-factor", "0",
				}
				if certs != nil {
					nodeArgs = append(nodeArgs, "--tls-cluster", "yes", "--tls-replication", "yes")
				}
				return append(nodeArgs, args...)
			})
		}()
	}
	wg.Wait()
	c := &Cluster{
		ids:       make(map[*Server]string),
		primaryOf: make(map[*Server]*Server),
	}
	for _, s := range nodes {
		if s != nil {
			c.all = append(c.all, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.Primaries = append([]*Server(nil), nodes[:clusterPrimaries]...)
	c.Replicas = append([]*Server(nil), nodes[clusterPrimaries:]...)
	for i, r := range c.Replicas {
		c.primaryOf[r] = c.Primaries[i]
	}
	if err := c.setup(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// NewCluster starts a cluster like StartCluster and stops all its nodes when
// the test ends. It fails the test when the cluster cannot be formed.
func NewCluster(t testing.TB, args ...string) *Cluster {
	t.Helper()
	c, err := StartCluster(args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// setup joins the started nodes into a cluster, the way redis-cli --cluster
// create does, and waits until it is healthy.
func (c *Cluster) setup() error {
	for i, s := range c.all {
		id, err := redis.String(s.Call("CLUSTER", "MYID"))
		if err != nil {
			return fmt.Errorf("redistest: CLUSTER MYID on %s: %w", s.Addr, err)
		}
		c.ids[s] = id
		// Distinct epochs avoid a collision-resolution round.
		if _, err := s.Call("CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return fmt.Errorf("redistest: CLUSTER SET-CONFIG-EPOCH on %s: %w", s.Addr, err)
		}
	}
	for i, p := range c.Primaries {
		lo, hi := i*NumSlots/clusterPrimaries, (i+1)*NumSlots/clusterPrimaries-1
		if i == clusterPrimaries-1 {
			hi = NumSlots - 1
		}
		if _, err := p.Call("CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			return fmt.Errorf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, p.Addr, err)
		}
	}
	first := c.all[0]
	for _, s := range c.all[1:] {
		if _, err := s.Call("CLUSTER", "MEET", "127.0.0.1", first.Port, first.extraPorts[0]); err != nil {
			return fmt.Errorf("redistest: CLUSTER MEET on %s: %w", s.Addr, err)
		}
	}
	// A node can only replicate a primary it knows.
	if err := waitFor(ClusterTimeout, c.checkAllKnown); err != nil {
		return fmt.Errorf("redistest: cluster nodes did not meet: %w", err)
	}
	for _, r := range c.Replicas {
		if _, err := r.Call("CLUSTER", "REPLICATE", c.ids[c.primaryOf[r]]); err != nil {
			return fmt.Errorf("redistest: CLUSTER REPLICATE on %s: %w", r.Addr, err)
		}
	}
	if err := c.waitHealthy(); err != nil {
		return err
	}
	// Drop the setup's INFO and CLUSTER calls from the statistics.
	for _, s := range c.all {
		if _, err := s.Call("CONFIG", "RESETSTAT"); err != nil {
			return fmt.Errorf("redistest: CONFIG RESETSTAT on %s: %w", s.Addr, err)
		}
	}
	return nil
}

// checkAllKnown returns nil once every node knows every other node past the
// handshake.
func (c *Cluster) checkAllKnown() error {
	for _, s := range c.all {
		nodes, err := clusterNodes(s)
		if err != nil {
			return err
		}
		known := make(map[string]bool)
		for _, n := range nodes {
			if !n.flags["handshake"] && !n.flags["noaddr"] {
				known[n.id] = true
			}
		}
		for o, id := range c.ids {
			if !known[id] {
				return fmt.Errorf("redistest: %s does not know %s yet", s.Addr, o.Addr)
			}
		}
	}
	return nil
}

// Close stops every node of the cluster, including killed ones, and removes
// their directories. It is safe to call more than once.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		errs := make([]error, len(c.all))
		var wg sync.WaitGroup
		for i, s := range c.all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Close()
			}()
		}
		wg.Wait()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Nodes returns the live primaries followed by the live replicas.
func (c *Cluster) Nodes() []*Server {
	nodes := make([]*Server, 0, len(c.Primaries)+len(c.Replicas))
	nodes = append(nodes, c.Primaries...)
	return append(nodes, c.Replicas...)
}

// Addrs returns the addresses of Nodes, primaries first.
func (c *Cluster) Addrs() []string {
	nodes := c.Nodes()
	addrs := make([]string, len(nodes))
	for i, s := range nodes {
		addrs[i] = s.Addr
	}
	return addrs
}

// NodeID returns the cluster node ID of s, or "" if s is not a node of c.
func (c *Cluster) NodeID(s *Server) string { return c.ids[s] }

// OwnerOf returns the primary that serves slot according to CLUSTER SLOTS
// on the first primary.
func (c *Cluster) OwnerOf(t testing.TB, slot int) *Server {
	t.Helper()
	s, err := c.ownerOf(slot)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (c *Cluster) ownerOf(slot int) (*Server, error) {
	if len(c.Primaries) == 0 {
		return nil, errors.New("redistest: cluster has no live primary")
	}
	ranges, err := redis.Values(c.Primaries[0].Call("CLUSTER", "SLOTS"))
	if err != nil {
		return nil, fmt.Errorf("redistest: CLUSTER SLOTS on %s: %w", c.Primaries[0].Addr, err)
	}
	for _, r := range ranges {
		fields, err := redis.Values(r, nil)
		if err != nil || len(fields) < 3 {
			return nil, fmt.Errorf("redistest: malformed CLUSTER SLOTS entry %v", r)
		}
		lo, _ := redis.Int(fields[0], nil)
		hi, _ := redis.Int(fields[1], nil)
		if slot < lo || slot > hi {
			continue
		}
		owner, err := redis.Values(fields[2], nil)
		if err != nil || len(owner) < 2 {
			return nil, fmt.Errorf("redistest: malformed CLUSTER SLOTS node %v", fields[2])
		}
		port, _ := redis.Int(owner[1], nil)
		for _, s := range c.Nodes() {
			if s.Port == port {
				return s, nil
			}
		}
		return nil, fmt.Errorf("redistest: slot %d is served by unknown port %d", slot, port)
	}
	return nil, fmt.Errorf("redistest: slot %d is not served by any node", slot)
}

// ReplicaOf returns the replica attached to primary. It fails the test if
// primary has none (for example after KillPrimary promoted its replica).
func (c *Cluster) ReplicaOf(t testing.TB, primary *Server) *Server {
	t.Helper()
	r, err := c.replicaOf(primary)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (c *Cluster) replicaOf(primary *Server) (*Server, error) {
	for _, r := range c.Replicas {
		if c.primaryOf[r] == primary {
			return r, nil
		}
	}
	return nil, fmt.Errorf("redistest: %s is not a cluster primary with a replica", primary)
}

// FlushAll removes every key from every primary and waits until the
// replicas have applied it too.
func (c *Cluster) FlushAll(t testing.TB) {
	t.Helper()
	for _, p := range c.Primaries {
		p.FlushAll(t)
		if _, err := c.replicaOf(p); err == nil {
			p.WaitReplicated(t, 1)
		}
	}
}

// ResetStats clears the statistics of every live node (see
// Server.ResetStats).
func (c *Cluster) ResetStats(t testing.TB) {
	t.Helper()
	for _, s := range c.Nodes() {
		s.ResetStats(t)
	}
}

// CommandStats returns the sum of the primaries' command statistics (see
// Server.CommandStats). Replicas are left out: they also count the commands
// they receive through replication.
func (c *Cluster) CommandStats(t testing.TB) map[string]int64 {
	t.Helper()
	sum := make(map[string]int64)
	for _, p := range c.Primaries {
		for k, v := range p.CommandStats(t) {
			sum[k] += v
		}
	}
	return sum
}

// WaitHealthy waits until every live node reports cluster_state:ok, agrees
// with the primaries on who serves each slot and sees the expected replicas
// attached. It fails the test after ClusterTimeout.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	if err := c.waitHealthy(); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) waitHealthy() error {
	if err := waitFor(ClusterTimeout, c.checkHealthy); err != nil {
		return fmt.Errorf("redistest: cluster not healthy: %w", err)
	}
	return nil
}

// checkHealthy returns nil if the live nodes form the expected cluster.
func (c *Cluster) checkHealthy() error {
	// Each primary's own claim is the authority on slot ownership.
	var owner [NumSlots]string
	for _, p := range c.Primaries {
		nodes, err := clusterNodes(p)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if !n.flags["myself"] {
				continue
			}
			if !n.flags["master"] {
				return fmt.Errorf("redistest: %s is not a master yet", p.Addr)
			}
			for _, r := range n.slots {
				for slot := r[0]; slot <= r[1]; slot++ {
					if owner[slot] != "" {
						return fmt.Errorf("redistest: slot %d claimed by two primaries", slot)
					}
					owner[slot] = n.id
				}
			}
		}
	}
	for slot, id := range owner {
		if id == "" {
			return fmt.Errorf("redistest: slot %d claimed by no primary", slot)
		}
	}
	for _, s := range c.Nodes() {
		if err := c.checkNodeView(s, &owner); err != nil {
			return err
		}
	}
	return checkReplicas(c.primaryOf)
}

// checkNodeView checks that s reports cluster_state:ok and sees the live
// nodes with their expected roles and the slots owned as in owner.
func (c *Cluster) checkNodeView(s *Server, owner *[NumSlots]string) error {
	info, err := redis.String(s.Call("CLUSTER", "INFO"))
	if err != nil {
		return fmt.Errorf("redistest: CLUSTER INFO on %s: %w", s.Addr, err)
	}
	if state := ParseInfo(info)["cluster_state"]; state != "ok" {
		return fmt.Errorf("redistest: %s reports cluster_state:%s", s.Addr, state)
	}
	nodes, err := clusterNodes(s)
	if err != nil {
		return err
	}
	byID := make(map[string]clusterNode, len(nodes))
	var seen [NumSlots]string
	for _, n := range nodes {
		byID[n.id] = n
		for _, r := range n.slots {
			for slot := r[0]; slot <= r[1]; slot++ {
				seen[slot] = n.id
			}
		}
	}
	if seen != *owner {
		return fmt.Errorf("redistest: %s does not agree on slot owners yet", s.Addr)
	}
	for _, p := range c.Primaries {
		n, ok := byID[c.ids[p]]
		if !ok || !n.flags["master"] || n.failing() || n.link != "connected" {
			return fmt.Errorf("redistest: %s does not see primary %s as a healthy master: %+v", s.Addr, p.Addr, n)
		}
	}
	for r, p := range c.primaryOf {
		n, ok := byID[c.ids[r]]
		if !ok || !n.flags["slave"] || n.master != c.ids[p] || n.failing() || n.link != "connected" {
			return fmt.Errorf("redistest: %s does not see %s as a healthy replica of %s: %+v", s.Addr, r.Addr, p.Addr, n)
		}
	}
	return nil
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id     string
	addr   string
	flags  map[string]bool
	master string // primary's ID for a replica, "" otherwise
	link   string
	slots  [][2]int // served slot ranges, inclusive
}

// failing reports whether the node is flagged as failed or suspected.
func (n clusterNode) failing() bool {
	return n.flags["fail"] || n.flags["fail?"] || n.flags["handshake"] || n.flags["noaddr"]
}

// clusterNodes runs CLUSTER NODES on s and parses the reply.
func clusterNodes(s *Server) ([]clusterNode, error) {
	text, err := redis.String(s.Call("CLUSTER", "NODES"))
	if err != nil {
		return nil, fmt.Errorf("redistest: CLUSTER NODES on %s: %w", s.Addr, err)
	}
	return parseClusterNodes(text)
}

// parseClusterNodes parses a CLUSTER NODES reply. Migration entries such as
// "[42->-id]" are ignored.
func parseClusterNodes(text string) ([]clusterNode, error) {
	var nodes []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("redistest: malformed CLUSTER NODES line %q", line)
		}
		n := clusterNode{id: f[0], addr: f[1], flags: make(map[string]bool), link: f[7]}
		for _, flag := range strings.Split(f[2], ",") {
			n.flags[flag] = true
		}
		if f[3] != "-" {
			n.master = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a > b || b >= NumSlots {
				return nil, fmt.Errorf("redistest: malformed slot range %q in CLUSTER NODES", r)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
