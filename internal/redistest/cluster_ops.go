package redistest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// migrateBatch is how many keys FinishMigration moves per MIGRATE.
const migrateBatch = 100

// MigrateSlot moves slot, and every key in it, from primary from to primary
// to, the way redis-cli --cluster reshard does, and waits until every node
// agrees on the new owner. It is BeginMigration followed by
// FinishMigration.
func (c *Cluster) MigrateSlot(t testing.TB, slot int, from, to *Server) {
	t.Helper()
	c.BeginMigration(t, slot, from, to)
	c.FinishMigration(t, slot, from, to)
}

// BeginMigration marks slot as importing on to and migrating on from, and
// moves no key. Until FinishMigration, from answers -ASK for keys of the slot
// that it does not hold, and to serves them only after ASKING.
func (c *Cluster) BeginMigration(t testing.TB, slot int, from, to *Server) {
	t.Helper()
	if err := c.beginMigration(slot, from, to); err != nil {
		t.Fatal(err)
	}
}

// FinishMigration moves the keys that from still holds in slot to to (with
// MIGRATE ... KEYS), assigns the slot to to on every primary (CLUSTER SETSLOT
// NODE) and waits until every node agrees. The slot must be in the state
// BeginMigration left it in.
func (c *Cluster) FinishMigration(t testing.TB, slot int, from, to *Server) {
	t.Helper()
	if err := c.finishMigration(slot, from, to); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) checkPrimaries(from, to *Server) error {
	if from == to {
		return fmt.Errorf("redistest: cannot migrate a slot from %s to itself", from)
	}
	for _, s := range []*Server{from, to} {
		if !slices.Contains(c.Primaries, s) {
			return fmt.Errorf("redistest: %s is not a live primary of the cluster", s)
		}
	}
	return nil
}

func (c *Cluster) beginMigration(slot int, from, to *Server) error {
	if err := c.checkPrimaries(from, to); err != nil {
		return err
	}
	if _, err := to.Call("CLUSTER", "SETSLOT", slot, "IMPORTING", c.ids[from]); err != nil {
		return fmt.Errorf("redistest: CLUSTER SETSLOT %d IMPORTING on %s: %w", slot, to, err)
	}
	if _, err := from.Call("CLUSTER", "SETSLOT", slot, "MIGRATING", c.ids[to]); err != nil {
		return fmt.Errorf("redistest: CLUSTER SETSLOT %d MIGRATING on %s: %w", slot, from, err)
	}
	return nil
}

func (c *Cluster) finishMigration(slot int, from, to *Server) error {
	if err := c.checkPrimaries(from, to); err != nil {
		return err
	}
	for {
		keys, err := redis.Values(from.Call("CLUSTER", "GETKEYSINSLOT", slot, migrateBatch))
		if err != nil {
			return fmt.Errorf("redistest: CLUSTER GETKEYSINSLOT %d on %s: %w", slot, from, err)
		}
		if len(keys) == 0 {
			break
		}
		args := append([]any{"127.0.0.1", to.Port, "", 0, 5000, "KEYS"}, keys...)
		if _, err := from.Call("MIGRATE", args...); err != nil {
			return fmt.Errorf("redistest: MIGRATE of slot %d from %s to %s: %w", slot, from, to, err)
		}
	}
	// Target first, then source, then the others, like redis-cli: the
	// target bumps its epoch so that its claim wins everywhere.
	order := []*Server{to, from}
	for _, p := range c.Primaries {
		if p != to && p != from {
			order = append(order, p)
		}
	}
	for _, p := range order {
		if _, err := p.Call("CLUSTER", "SETSLOT", slot, "NODE", c.ids[to]); err != nil {
			return fmt.Errorf("redistest: CLUSTER SETSLOT %d NODE on %s: %w", slot, p, err)
		}
	}
	return c.waitHealthy()
}

// Failover makes primary's replica take over with CLUSTER FAILOVER (a
// coordinated manual failover that loses no write) and waits until the two
// have swapped roles and every node agrees. Primaries and Replicas are
// updated: the old replica takes primary's place in Primaries and vice
// versa.
func (c *Cluster) Failover(t testing.TB, primary *Server) {
	t.Helper()
	if err := c.failover(primary); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) failover(primary *Server) error {
	replica, err := c.replicaOf(primary)
	if err != nil {
		return err
	}
	if _, err := replica.Call("CLUSTER", "FAILOVER"); err != nil {
		return fmt.Errorf("redistest: CLUSTER FAILOVER on %s: %w", replica, err)
	}
	c.Primaries[slices.Index(c.Primaries, primary)] = replica
	c.Replicas[slices.Index(c.Replicas, replica)] = primary
	delete(c.primaryOf, replica)
	c.primaryOf[primary] = replica
	if err := c.waitHealthy(); err != nil {
		return fmt.Errorf("redistest: failover of %s to %s: %w", primary, replica, err)
	}
	return nil
}

// KillPrimary kills primary with SIGKILL and waits until the cluster has
// promoted its replica and every live node agrees (this takes a few seconds
// with a node timeout of ClusterNodeTimeout ms). The promoted replica takes
// primary's place in Primaries and leaves Replicas; it has no replica of its
// own afterwards. The killed server stays stopped (its files are removed at
// Close); it still appears as a failed node in CLUSTER NODES.
func (c *Cluster) KillPrimary(t testing.TB, primary *Server) {
	t.Helper()
	if err := c.killPrimary(primary); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) killPrimary(primary *Server) error {
	replica, err := c.replicaOf(primary)
	if err != nil {
		return err
	}
	if !primary.Running() {
		return errors.New("redistest: KillPrimary: " + primary.Addr + " is not running")
	}
	primary.Kill()
	c.Primaries[slices.Index(c.Primaries, primary)] = replica
	c.Replicas = slices.DeleteFunc(c.Replicas, func(s *Server) bool { return s == replica })
	delete(c.primaryOf, replica)
	if err := c.waitHealthy(); err != nil {
		return fmt.Errorf("redistest: promotion of %s after killing %s: %w", replica, primary, err)
	}
	return nil
}
