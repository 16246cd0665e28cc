package rbatch_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// soakACL adds the user the soak's clients log in as: CLIENT KILL USER
// then hits only their connections.
func soakACL(t *testing.T, servers ...*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		s.MustDo(t, "ACL", "SETUSER", soakUser, "on", ">"+soakPass, "~*", "&*", "+@all")
	}
}

// soakConns counts the connections of the soak's user on s.
func soakConns(t *testing.T, s *redistest.Server) int {
	t.Helper()
	list, err := redis.String(s.Call("CLIENT", "LIST"))
	if err != nil {
		t.Fatalf("CLIENT LIST on %s: %v", s.Addr, err)
	}
	return strings.Count(list, " user="+soakUser+" ")
}

func soakWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("soak: timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func soakGet(t *testing.T, s *redistest.Server, key string) int64 {
	t.Helper()
	n, err := redis.Int64(s.Call("GET", key))
	if err != nil {
		t.Fatalf("GET %s on %s: %v", key, s.Addr, err)
	}
	return n
}

func soakConfig(addr string) rbatch.Config {
	return rbatch.Config{
		Addrs: []string{addr}, Username: soakUser, Password: soakPass,
		DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, PoolSize: 3,
	}
}

// newSoakStandalone is a primary with a replica, reached through a proxy.
func newSoakStandalone(t *testing.T) *soakEnv {
	primary, replica := redistest.PrimaryReplica(t)
	soakACL(t, primary, replica)
	p := redistest.NewProxy(t, primary.Addr)
	e := &soakEnv{name: "standalone", cfg: soakConfig(p.Addr), ordered: true, sync: true, proxy: p}
	for i := range 4 {
		e.keys = append(e.keys, fmt.Sprintf("soak:c%d", i))
	}
	e.txKeys = e.keys
	for _, k := range e.keys {
		primary.MustDo(t, "SET", k, soakIncrStart)
	}
	e.read = func(key string) int64 { return soakGet(t, primary, key) }
	conns := func() int {
		n, _ := strconv.Atoi(primary.Info(t, "stats")["total_connections_received"])
		return n
	}
	base := conns()
	e.accepted = func() int { return conns() - base } // the helpers reuse one cached connection
	e.quiet = func() {
		soakWait(t, "the proxy's connections are closed", func() bool { return p.Conns() == 0 })
		soakWait(t, "the server dropped the soak's connections", func() bool { return soakConns(t, primary) == 0 })
	}
	e.faults = func(rng *rand.Rand, sp *soakSpec) soakFault { return soakProxyFault(rng, sp, p) }
	return e
}

// soakProxyFault picks a fault the proxy injects into a standalone batch.
func soakProxyFault(rng *rand.Rand, sp *soakSpec, p *redistest.Proxy) soakFault {
	kinds := []string{"none", "none", "delay", "cancel", "cut-to-server", "cut-to-client", "reset-to-server",
		"reset-to-client", "drop-replies", "stall-to-server", "stall-to-client", "cut-at-command"}
	if sp.mode != rbatch.InMemory {
		kinds = append(kinds, "cut-after-multi", "cut-before-exec", "cut-after-exec")
	}
	if sp.skip {
		kinds = append(kinds, "cut-before-reply-on")
	}
	if sp.sync {
		kinds = append(kinds, "cut-after-wait", "cut-during-wait")
	}
	kind := kinds[rng.IntN(len(kinds))]
	f := soakFault{kind: kind}
	once := rng.IntN(2) == 0
	bytesFault := func(k redistest.FaultKind, dir redistest.Dir, max int64) *redistest.Fault {
		return &redistest.Fault{Kind: k, Dir: dir, AfterBytes: rng.Int64N(max + 1), Once: once}
	}
	at := func(cmd string, nth int, after bool) *redistest.Fault {
		return &redistest.Fault{Kind: redistest.CutAtCommand, Command: cmd, Nth: nth, AfterForward: after, Once: once}
	}
	switch kind {
	case "delay":
		f.proxy = &redistest.Fault{Kind: redistest.Delay, Dir: redistest.BothDirs, Delay: time.Duration(rng.IntN(1500)) * time.Microsecond}
	case "cancel":
		f.cancel, f.pause = true, 15*time.Millisecond
	case "cut-to-server":
		f.proxy = bytesFault(redistest.Cut, redistest.ToServer, sp.reqBytes)
	case "cut-to-client":
		f.proxy = bytesFault(redistest.Cut, redistest.ToClient, sp.replyBytes)
	case "reset-to-server":
		f.proxy = bytesFault(redistest.Reset, redistest.ToServer, sp.reqBytes)
	case "reset-to-client":
		f.proxy = bytesFault(redistest.Reset, redistest.ToClient, sp.replyBytes)
	case "drop-replies":
		f.proxy, f.timeout = bytesFault(redistest.Drop, redistest.ToClient, sp.replyBytes), soakShortTimeout
	case "stall-to-server":
		f.proxy, f.timeout = bytesFault(redistest.Stall, redistest.ToServer, sp.reqBytes), soakShortTimeout
	case "stall-to-client":
		f.proxy, f.timeout = bytesFault(redistest.Stall, redistest.ToClient, sp.replyBytes), soakShortTimeout
	case "cut-at-command":
		k := rng.IntN(len(sp.cmds))
		nth := 0
		for _, c := range sp.cmds[:k+1] {
			if c.name == sp.cmds[k].name {
				nth++
			}
		}
		f.proxy = at(sp.cmds[k].name, nth, rng.IntN(2) == 0)
	case "cut-after-multi":
		f.proxy = at("MULTI", 1, true)
	case "cut-before-exec":
		f.proxy = at("EXEC", 1, false)
	case "cut-after-exec":
		f.proxy = at("EXEC", 1, true)
	case "cut-before-reply-on":
		f.proxy = at("CLIENT REPLY ON", 1, false)
	case "cut-after-wait":
		f.proxy = at("WAIT", 1, true)
	case "cut-during-wait": // WAIT for more replicas than there are blocks until its timeout
		f.waitLong, f.killsIdle = true, true
		f.during = func() { time.Sleep(100 * time.Millisecond); p.CutAll() }
	}
	return f
}

// newSoakCluster starts a cluster of its own: the soak kills a primary and
// moves slots.
func newSoakCluster(t *testing.T) *soakEnv {
	cl := redistest.NewCluster(t)
	soakACL(t, cl.Nodes()...)
	e := &soakEnv{name: "cluster", cfg: soakConfig(cl.Primaries[0].Addr)}
	// Two counters per primary, and three of one slot for transactions.
	perRange := map[int]int{}
	for i := 0; len(e.keys) < 6; i++ {
		k := fmt.Sprintf("soak:{k%d}", i)
		if r := route.Slot(k) * 3 / route.NumSlots; perRange[r] < 2 {
			perRange[r]++
			e.keys = append(e.keys, k)
		}
	}
	for i := range 3 {
		e.txKeys = append(e.txKeys, fmt.Sprintf("soak:{tx}:c%d", i))
	}
	owner := func(key string) *redistest.Server { return cl.OwnerOf(t, route.Slot(key)) }
	for _, k := range append(append([]string{}, e.keys...), e.txKeys...) {
		owner(k).MustDo(t, "SET", k, soakIncrStart)
	}
	e.read = func(key string) int64 { return soakGet(t, owner(key), key) }
	e.quiet = func() {
		for _, s := range cl.Nodes() {
			soakWait(t, "the cluster dropped the soak's connections", func() bool { return soakConns(t, s) == 0 })
		}
	}
	killed := false
	e.faults = func(rng *rand.Rand, sp *soakSpec) soakFault {
		key := sp.keys[rng.IntN(len(sp.keys))]
		node := owner(key)
		if e.batches >= soakKillAt && !killed {
			killed = true
			node.MustDo(t, "WAIT", 1, 2000) // what the batch does is all that may be lost
			return soakFault{kind: "kill-primary", pause: 5 * time.Millisecond, lossy: true, killsIdle: true,
				during: func() { cl.KillPrimary(t, node) },
				after:  func() { e.cfg.Addrs = []string{cl.Primaries[0].Addr} }}
		}
		kinds := []string{"none", "none", "cancel", "client-kill", "client-kill", "client-pause", "debug-sleep",
			"migrate-slot", "stale-slot-map"}
		f := soakFault{kind: kinds[rng.IntN(len(kinds))], pause: 10 * time.Millisecond}
		switch f.kind {
		case "cancel":
			f.cancel = true
		case "client-kill":
			f.killsIdle = true
			f.during = func() { node.MustDo(t, "CLIENT", "KILL", "USER", soakUser) }
		case "client-pause":
			f.timeout = time.Duration(30+rng.IntN(2)*1000) * time.Millisecond
			f.during = func() { node.MustDo(t, "CLIENT", "PAUSE", 100, "WRITE") }
			f.after = func() { node.MustDo(t, "CLIENT", "UNPAUSE") }
		case "debug-sleep":
			f.timeout = 40 * time.Millisecond
			f.during = func() { node.MustDo(t, "DEBUG", "SLEEP", "0.1") }
		case "migrate-slot", "stale-slot-map":
			migrate := func() {
				var others []*redistest.Server
				for _, p := range cl.Primaries {
					if p != node {
						others = append(others, p)
					}
				}
				cl.MigrateSlot(t, route.Slot(key), node, others[rng.IntN(len(others))])
			}
			if f.kind == "migrate-slot" {
				f.during = migrate
			} else {
				migrate() // before the batch, after its client loaded the slot map: MOVED
				f.done = true
			}
		}
		return f
	}
	return e
}

// soakRESPLen is the length of a command encoded as RESP.
func soakRESPLen(args ...string) int64 {
	n := int64(len(strconv.Itoa(len(args))) + 3)
	for _, a := range args {
		n += int64(len(strconv.Itoa(len(a))) + len(a) + 5)
	}
	return n
}

// soakNewSpec picks a batch's mode, options and commands.
func soakNewSpec(rng *rand.Rand, e *soakEnv) *soakSpec {
	modes := []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisReadAtomic, rbatch.RedisWriteAtomic}
	sp := &soakSpec{mode: modes[rng.IntN(len(modes))], skip: rng.IntN(10) < 3, retry: rng.IntN(2) == 0}
	sp.sync = e.sync && rng.IntN(5) == 0
	sp.keys = e.keys
	if sp.mode != rbatch.InMemory {
		sp.keys = e.txKeys
	}
	n := 1 + rng.IntN(2000)
	if rng.IntN(10) == 0 {
		n = 1 + rng.IntN(5)
	}
	for range n {
		c := soakCmd{key: rng.IntN(len(sp.keys))}
		switch r := rng.IntN(10); {
		case sp.mode == rbatch.RedisReadAtomic || r >= 8:
			c.name = "GET"
		case r < 5:
			c.name, c.delta = "INCR", 1
		default:
			c.name, c.delta = "INCRBY", 1+rng.Int64N(50)
		}
		sp.cmds = append(sp.cmds, c)
		args := []string{c.name, sp.keys[c.key]}
		if c.name == "INCRBY" {
			args = append(args, strconv.FormatInt(c.delta, 10))
		}
		sp.reqBytes += soakRESPLen(args...)
		sp.replyBytes += 8
	}
	if !sp.skip {
		return sp
	}
	sp.replyBytes = 5 // +OK of CLIENT REPLY ON
	return sp
}

func (sp *soakSpec) options(f soakFault) []rbatch.Option {
	timeout := f.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	opts := []rbatch.Option{rbatch.WithMode(sp.mode), rbatch.WithResponseTimeout(timeout)}
	if sp.skip {
		opts = append(opts, rbatch.WithSkipResult())
	}
	if sp.retry {
		opts = append(opts, rbatch.WithRetry(2, 5*time.Millisecond))
	}
	switch {
	case sp.sync && f.waitLong:
		opts = append(opts, rbatch.WithSync(2, 250*time.Millisecond))
	case sp.sync:
		opts = append(opts, rbatch.WithSync(1, 2*time.Second))
	}
	return opts
}

func (sp *soakSpec) String() string {
	return fmt.Sprintf("%v skip=%v retry=%v sync=%v n=%d", sp.mode, sp.skip, sp.retry, sp.sync, len(sp.cmds))
}
