package rbatch_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// TestFaultSoak runs batches of INCR, INCRBY and GET in every mode, with and
// without WithSkipResult and WithRetry, against a standalone server (through
// a fault-injecting proxy) and a cluster (faults made by the servers), with
// a random fault at a random point or none. After each batch every future
// must be in exactly one state, Execute's error and Responses must agree
// with the futures, and the counters must show that nothing was applied
// twice and that what was reported applied was: final − before − applied
// is in [0, unknown] (all or nothing for a transaction).
//
// go test -race -run TestFaultSoak -v . -soak.duration 10m runs it longer.
var (
	soakBatches  = flag.Int("soak.batches", 1000, "TestFaultSoak: number of batches (stops earlier at soak.duration)")
	soakDuration = flag.Duration("soak.duration", 0, "TestFaultSoak: how long to run at most; given alone, run that long (default 100s)")
	soakSeed     = flag.Uint64("soak.seed", 0, "TestFaultSoak: random seed (0: from the clock)")
)

const (
	soakUser, soakPass = "soak", "soak-pw"
	soakDefaultCap     = 100 * time.Second
	soakHang           = 60 * time.Second      // an Execute that takes longer hangs
	soakMaxErrors      = 20                    // batches with violations before the soak stops
	soakKillAt         = 150                   // the cluster batch during which a primary is killed
	soakShortTimeout   = 60 * time.Millisecond // WithResponseTimeout under faults that stop replies
	soakIncrStart      = 1000                  // the counters' initial value
)

type soakState int

const (
	soakApplied soakState = iota
	soakFailed
	soakAborted
	soakNotSent
	soakUnknown
	soakSkipped
	soakStates
)

var soakStateNames = [soakStates]string{"applied", "failed", "aborted", "not-sent", "unknown", "skipped"}

var soakSentinels = [...]struct {
	err error
	st  soakState
}{
	{rbatch.ErrTxAborted, soakAborted},
	{rbatch.ErrNotSent, soakNotSent},
	{rbatch.ErrUnknownOutcome, soakUnknown},
	{rbatch.ErrResultSkipped, soakSkipped},
}

// soakClassify returns the state a future's error puts it in; false when
// the error puts it in none or in several.
func soakClassify(err error) (soakState, bool) {
	st, n := soakState(-1), 0
	for _, s := range soakSentinels {
		if errors.Is(err, s.err) {
			st, n = s.st, n+1
		}
	}
	var re *rbatch.RedisError
	switch {
	case n > 1:
		return st, false
	case n == 1:
		return st, true
	case err == nil || errors.Is(err, rbatch.ErrNil):
		return soakApplied, true
	case errors.As(err, &re):
		return soakFailed, true
	}
	return -1, false
}

// soakCmd is one queued command: INCR or INCRBY (delta > 0) or GET of a counter.
type soakCmd struct {
	name  string
	key   int
	delta int64
	f     *rbatch.Future[int64]
}

// soakFault is what happens to one batch.
type soakFault struct {
	kind    string
	proxy   *redistest.Fault // set on the proxy before the batch is queued
	during  func()           // run while the batch executes, after a random pause
	pause   time.Duration    // at most this long
	after   func()           // undoes the fault once Execute returned
	cancel  bool             // cancel Execute's context after the pause
	timeout time.Duration    // WithResponseTimeout (0: 5s)
	// lossy: a primary was killed, so acknowledged writes may be lost; only
	// "never applied twice" is checked.
	lossy bool
	// killsIdle: the fault may kill pooled idle connections too, so a pool
	// check may find one closed under it (but never one answering wrongly).
	killsIdle bool
	waitLong  bool // WithSync(2, …) with one replica: WAIT runs to its timeout
	done      bool // the fault was made before the batch
}

// soakEnv is one deployment the soak runs batches on.
type soakEnv struct {
	name    string
	cfg     rbatch.Config
	c       *rbatch.Client
	keys    []string // counters for non-atomic batches
	txKeys  []string // counters of one slot, for atomic batches
	ordered bool     // one node: commands apply in submission order
	sync    bool     // a replica: WithSync(1, …) is possible
	proxy   *redistest.Proxy
	read    func(key string) int64
	quiet   func() // waits until no connection of a closed client is left on the servers
	faults  func(rng *rand.Rand, sp *soakSpec) soakFault
	batches int
	clients int
	// time spent making clients, and waiting for the servers to drop a
	// closed client's connections
	dialing, settling time.Duration
	accepted          func() int // connections the server accepted from the soak's clients so far
}

func (e *soakEnv) client(t *testing.T) *rbatch.Client {
	t.Helper()
	if e.c == nil {
		defer func(st time.Time) { e.dialing += time.Since(st) }(time.Now())
		c, err := rbatch.NewClient(context.Background(), e.cfg)
		if err != nil {
			t.Fatalf("%s: NewClient: %v", e.name, err)
		}
		e.c, e.clients = c, e.clients+1
	}
	return e.c
}

func (e *soakEnv) closeClient() {
	if e.c != nil {
		st := time.Now()
		e.c.Close()
		e.c = nil
		e.quiet()
		e.settling += time.Since(st)
	}
}

// soakSpec is one batch.
type soakSpec struct {
	mode                 rbatch.ExecutionMode
	skip, retry, sync    bool
	keys                 []string
	cmds                 []soakCmd
	reqBytes, replyBytes int64 // rough sizes on the wire
}

// soakStats counts outcomes.
type soakStats struct {
	batches, violations, execErrs int
	poolChecks, idleKilled, dirty int
	moved, asked, retried         int // commands redirected; node groups sent more than once
	setup, executing              time.Duration
	states                        [soakStates]int
	byKind                        map[string]*soakKindStats
	byMode                        map[string]int
}

type soakKindStats struct {
	batches, fired int
	took           time.Duration
	states         [soakStates]int
}

func TestFaultSoak(t *testing.T) {
	start := time.Now()
	target, limit := *soakBatches, soakDefaultCap
	if *soakDuration > 0 {
		limit = *soakDuration
		set := false
		flag.Visit(func(f *flag.Flag) { set = set || f.Name == "soak.batches" })
		if !set {
			target = int(^uint(0) >> 1)
		}
	}
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-soak.seed to replay the choices; timing differs)", seed)
	rng := rand.New(rand.NewPCG(seed, 0x50a6))

	std := newSoakStandalone(t)
	cl := newSoakCluster(t)
	setup := time.Since(start)
	stats := &soakStats{byKind: map[string]*soakKindStats{}, byMode: map[string]int{}}
	t.Cleanup(func() {
		std.closeClient()
		cl.closeClient()
	})
	for i := 0; i < target && time.Since(start) < limit; i++ {
		env := std
		if rng.IntN(10) < 4 {
			env = cl
		}
		soakBatch(t, rng, env, stats)
		if stats.violations >= soakMaxErrors {
			t.Errorf("stopping after %d batches with violations", stats.violations)
			break
		}
	}
	for _, e := range []*soakEnv{std, cl} {
		if e.c != nil {
			if err := rbatch.CheckPoolsClean(e.c); err != nil {
				t.Errorf("%s: pooled connections at the end: %v", e.name, err)
			}
			e.closeClient()
		}
	}
	stats.setup = setup
	soakReport(t, stats, []*soakEnv{std, cl}, time.Since(start))
	if stats.batches < target && time.Since(start) >= limit {
		t.Logf("NOTE: stopped at the %v cap after %d of %d batches", limit, stats.batches, target)
	}
}

func soakReport(t *testing.T, s *soakStats, envs []*soakEnv, d time.Duration) {
	t.Logf("%d batches in %v (%.0f/s); %d with violations; %d Execute errors", s.batches, d.Round(time.Millisecond),
		float64(s.batches)/d.Seconds(), s.violations, s.execErrs)
	t.Logf("  time: %v starting servers, %v in Execute", s.setup.Round(time.Millisecond), s.executing.Round(time.Millisecond))
	for _, e := range envs {
		t.Logf("  %s: %d batches, %d clients (%v making them, %v waiting for their connections to close)",
			e.name, e.batches, e.clients, e.dialing.Round(time.Millisecond), e.settling.Round(time.Millisecond))
	}
	var sb strings.Builder
	total := 0
	for st, n := range s.states {
		fmt.Fprintf(&sb, " %s=%d", soakStateNames[st], n)
		total += n
	}
	t.Logf("futures: %d:%s", total, sb.String())
	modes := make([]string, 0, len(s.byMode))
	for m := range s.byMode {
		modes = append(modes, m)
	}
	sort.Strings(modes)
	sb.Reset()
	for _, m := range modes {
		fmt.Fprintf(&sb, " %s=%d", m, s.byMode[m])
	}
	t.Logf("batches per mode/options:%s", sb.String())
	t.Logf("redirects: %d commands MOVED, %d ASKed; %d node groups sent more than once", s.moved, s.asked, s.retried)
	t.Logf("pool checks: %d; dirty pooled connections: %d; idle ones found closed by CLIENT KILL or kill -9 (tolerated): %d",
		s.poolChecks, s.dirty, s.idleKilled)
	for _, e := range envs {
		if e.accepted != nil {
			n := e.accepted()
			t.Logf("  %s server accepted %d connections for %d clients: %d more than one per client (dropped as unclean, or pool growth)",
				e.name, n, e.clients, n-e.clients)
		}
	}
	kinds := make([]string, 0, len(s.byKind))
	for k := range s.byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	t.Logf("%-20s %7s %6s %8s  %s", "fault", "batches", "fired", "time", "futures per state")
	for _, k := range kinds {
		ks := s.byKind[k]
		sb.Reset()
		for st, n := range ks.states {
			if n > 0 {
				fmt.Fprintf(&sb, " %s=%d", soakStateNames[st], n)
			}
		}
		t.Logf("%-20s %7d %6d %8v %s", k, ks.batches, ks.fired, ks.took.Round(time.Millisecond), sb.String())
	}
}

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

// soakBatch runs one batch on e and checks its outcome.
func soakBatch(t *testing.T, rng *rand.Rand, e *soakEnv, stats *soakStats) {
	t.Helper()
	began := time.Now()
	e.batches++
	stats.batches++
	sp := soakNewSpec(rng, e)
	c := e.client(t)
	fault := e.faults(rng, sp)
	what := fmt.Sprintf("%s batch %d [%v fault=%s]", e.name, stats.batches, sp, fault.kind)
	violations := 0
	bad := func(format string, args ...any) {
		violations++
		if violations <= 3 {
			t.Errorf("%s: %s", what, fmt.Sprintf(format, args...))
		}
	}
	before := make([]int64, len(sp.keys))
	for i, k := range sp.keys {
		before[i] = e.read(k)
	}

	fired := 0
	if fault.proxy != nil {
		fired = e.proxy.Fired()
		e.proxy.SetFault(*fault.proxy)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := c.NewBatch(sp.options(fault)...)
	for i := range sp.cmds {
		cmd := &sp.cmds[i]
		l := b.AtomicLong(sp.keys[cmd.key])
		switch cmd.name {
		case "GET":
			cmd.f = l.GetAsync()
		case "INCR":
			cmd.f = l.IncrementAndGetAsync()
		default:
			cmd.f = l.AddAndGetAsync(cmd.delta)
		}
	}
	execStart := time.Now()
	if fault.done {
		stats.kind(fault.kind).fired++
	}
	exec := b.ExecuteAsync(ctx)
	if fault.during != nil || fault.cancel {
		time.Sleep(time.Duration(rng.Int64N(int64(fault.pause) + 1)))
		if fault.cancel {
			cancel()
		} else {
			fault.during()
		}
		if fault.proxy == nil {
			stats.kind(fault.kind).fired++
		}
	}
	select {
	case <-exec.Done():
	case <-time.After(soakHang):
		t.Fatalf("%s: Execute did not return within %v", what, soakHang)
	}
	res, err := exec.Get()
	stats.executing += time.Since(execStart)
	if fault.after != nil {
		fault.after()
	}

	// Every future in exactly one state; Execute's error and Responses agree.
	var errSays [soakStates]int // Execute's error reaches the state: 1 yes, -1 no (checked once each)
	says := func(st soakState) bool {
		if errSays[st] == 0 {
			var re *rbatch.RedisError
			errSays[st] = -1
			if st == soakFailed && errors.As(err, &re) || st >= soakAborted && errors.Is(err, soakSentinels[st-soakAborted].err) {
				errSays[st] = 1
			}
		}
		return errSays[st] == 1
	}
	states := make([]soakState, len(sp.cmds))
	for i, cmd := range sp.cmds {
		v, ferr := cmd.f.Get()
		st, ok := soakClassify(ferr)
		if !ok {
			bad("future %d (%s) is in no single state: %v", i, cmd.name, ferr)
			states[i] = soakUnknown // for the counter checks
			continue
		}
		states[i] = st
		stats.states[st]++
		if st != soakApplied && st != soakSkipped && !says(st) {
			bad("future %d is %s (%v) but Execute's error does not say so: %v", i, soakStateNames[st], ferr, err)
		}
		if res == nil {
			continue
		}
		if sp.skip {
			if len(res.Responses) != 0 {
				bad("Responses has %d entries with SkipResult", len(res.Responses))
			}
			continue
		}
		if len(res.Responses) != len(sp.cmds) {
			bad("Responses has %d entries, want %d", len(res.Responses), len(sp.cmds))
			continue
		}
		r := res.Responses[i]
		switch rerr, isErr := r.(error); {
		case st == soakApplied && errors.Is(ferr, rbatch.ErrNil):
			if r != nil {
				bad("Responses[%d] = %v for a nil reply", i, r)
			}
		case st == soakApplied:
			if r != any(v) {
				bad("Responses[%d] = %v, future %d", i, r, v)
			}
		case !isErr || !errors.Is(rerr, ferr):
			bad("Responses[%d] = %v, future's error %v", i, r, ferr)
		}
	}
	if res == nil {
		bad("Execute returned no result: %v", err)
	}
	if err != nil {
		stats.execErrs++
	}
	if res != nil {
		for _, nr := range res.Nodes {
			stats.moved += nr.Moved
			stats.asked += nr.Asked
			if nr.Attempts > 1 {
				stats.retried++
			}
		}
	}
	ok := 0
	for _, st := range states {
		if st == soakApplied || st == soakSkipped {
			ok++
		}
	}
	if err == nil && ok != len(states) {
		bad("Execute returned nil but only %d of %d futures were applied or skipped", ok, len(states))
	}
	if (fault.kind == "none" || fault.kind == "delay") && err != nil {
		bad("no fault, yet Execute failed: %v", err)
	}
	if (fault.kind == "none" || fault.kind == "delay") && sp.sync && res != nil && res.SyncedReplicas < 1 {
		bad("no fault, yet SyncedReplicas = %d with a replica attached", res.SyncedReplicas)
	}
	if fault.kind == "cut-during-wait" && err == nil {
		// Replies came within 100 ms (else Execute fails), then WAIT ran
		// its 250 ms: the cut landed while it ran, so its reply was lost.
		bad("the connection was cut while WAIT ran, yet Execute returned nil (SyncedReplicas %d)", res.SyncedReplicas)
	}
	if sp.mode != rbatch.InMemory && len(states) > 0 {
		for i, st := range states {
			if st != states[0] {
				bad("transaction split: future 0 is %s, future %d is %s", soakStateNames[states[0]], i, soakStateNames[st])
				break
			}
		}
	}

	// Put the connections in order, then read the counters.
	if e.proxy != nil {
		e.proxy.Clear()
		if fault.proxy != nil && e.proxy.Fired() > fired {
			stats.kind(fault.kind).fired++
		}
	}
	stats.poolChecks++
	if perr := rbatch.CheckPoolsClean(c); perr != nil {
		if fault.killsIdle && soakKilledIdle(perr) {
			stats.idleKilled++
		} else {
			stats.dirty++
			bad("a pooled connection is not clean: %v", perr)
		}
	}
	if fault.kind != "none" || err != nil {
		e.closeClient()
	}
	final := make([]int64, len(sp.keys))
	for i, k := range sp.keys {
		final[i] = e.read(k)
	}
	soakCheckCounters(sp, states, before, final, e.ordered && !fault.lossy, fault.lossy, bad)

	ks := stats.kind(fault.kind)
	ks.batches++
	ks.took += time.Since(began)
	for _, st := range states {
		ks.states[st]++
	}
	mode := sp.mode.String()
	if sp.skip {
		mode += "+skip"
	}
	stats.byMode[mode]++
	if violations > 0 {
		stats.violations++
		t.Logf("%s: %d violations; Execute: %v", what, violations, err)
	}
}

func (s *soakStats) kind(k string) *soakKindStats {
	ks := s.byKind[k]
	if ks == nil {
		ks = &soakKindStats{}
		s.byKind[k] = ks
	}
	return ks
}

// soakKilledIdle reports whether a pool check failed only because the
// server had closed an idle connection (EOF, reset), not because one
// answered something other than PONG.
func soakKilledIdle(err error) bool {
	msg := err.Error()
	return !strings.Contains(msg, "answered") &&
		(strings.Contains(msg, "EOF") || strings.Contains(msg, "reset by peer") || strings.Contains(msg, "broken pipe"))
}

// soakCheckCounters checks the counters against the futures' states and
// values: per key, final − before − applied ∈ [0, unknown] (skipped counts
// as unknown), all or nothing for a transaction. ordered checks each
// applied value against the commands before it (one node applies them in
// submission order); lossy (a primary was killed) checks only that nothing
// was applied twice.
func soakCheckCounters(sp *soakSpec, states []soakState, before, final []int64, ordered, lossy bool, bad func(string, ...any)) {
	n := len(sp.keys)
	applied, unknown := make([]int64, n), make([]int64, n)
	for i, cmd := range sp.cmds {
		switch states[i] {
		case soakApplied:
			applied[cmd.key] += cmd.delta
		case soakUnknown, soakSkipped:
			unknown[cmd.key] += cmd.delta
		}
	}
	allNone, allFull := true, true
	for k := range n {
		diff := final[k] - before[k] - applied[k]
		switch {
		case lossy:
			if diff > unknown[k] {
				bad("%s: %d → %d, applied %d, unknown %d: applied more than once", sp.keys[k], before[k], final[k], applied[k], unknown[k])
			}
		case diff < 0 || diff > unknown[k]:
			bad("%s: %d → %d, applied %d, unknown %d: final − before − applied = %d ∉ [0, %d]",
				sp.keys[k], before[k], final[k], applied[k], unknown[k], diff, unknown[k])
		}
		allNone = allNone && diff == 0
		allFull = allFull && diff == unknown[k]
	}
	if sp.mode != rbatch.InMemory && !lossy && !allNone && !allFull {
		bad("transaction half applied: before %v, final %v, applied %v, unknown %v", before, final, applied, unknown)
	}
	if lossy {
		return
	}
	// Each value against the commands before it.
	applPrefix, unkPrefix := make([]int64, n), make([]int64, n)
	for i, cmd := range sp.cmds {
		k := cmd.key
		if states[i] == soakApplied {
			v, _ := cmd.f.Get()
			lo, hi := before[k]+cmd.delta, final[k]
			if ordered {
				lo = before[k] + applPrefix[k] + cmd.delta
				if cmd.delta > 0 {
					hi = lo + unkPrefix[k]
				}
			}
			if v < lo || v > hi {
				bad("future %d (%s %s) = %d ∉ [%d, %d]", i, cmd.name, sp.keys[k], v, lo, hi)
			}
			applPrefix[k] += cmd.delta
		}
		if states[i] == soakUnknown || states[i] == soakSkipped {
			unkPrefix[k] += cmd.delta
		}
	}
}

// Found by TestFaultSoak (a "cancel" fault, cluster, REDIS_WRITE_ATOMIC):
// a context that ends just as a batch finishes left an aborted (closed)
// connection in the pool; the next batch on it failed without any fault.
// batch.Run and Session.close ignored context.AfterFunc's stop result, so
// the abort it had started could land after the connection was put back as
// clean. Fixed in 7123bce while the soak was written; this failed within a
// few dozen iterations before it (db78719).
func TestCancelAsBatchEndsLeavesNoDeadConn(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) { soakCancelAtEnd(t, mode) })
	}
}

func soakCancelAtEnd(t *testing.T, mode rbatch.ExecutionMode) {
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A goroutine always runnable keeps the other P from going idle and
	// stealing the one AfterFunc starts, as on a loaded machine.
	var stop atomic.Bool
	defer stop.Store(true)
	go func() {
		for !stop.Load() {
			runtime.Gosched()
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(1500 * time.Millisecond)
	iters, early, delay := 0, 0, 500*time.Microsecond
	defer func() { t.Logf("%d iterations, %d cancelled before the end", iters, early) }()
	for ; iters < 20000 && time.Now().Before(deadline); iters++ {
		ctx, cancel := context.WithCancel(context.Background())
		b := c.NewBatch(rbatch.WithMode(mode))
		for range 100 {
			b.Bucket("soakbug:k").GetAsync()
		}
		// The cancel dithers around the end of Execute: about half land
		// before it (an error), half after it returned.
		d := time.Duration(float64(delay) * (0.9 + 0.2*rng.Float64()))
		start := time.Now()
		go func() {
			for time.Since(start) < d {
			}
			cancel()
			// Hold this P a while: the goroutine AfterFunc just started
			// (which aborts the connection) waits in its run queue.
			for t := time.Now(); time.Since(t) < 2*time.Millisecond; {
			}
		}()
		if _, err := b.Execute(ctx); err != nil {
			early++
			delay = delay * 21 / 20
		} else {
			delay = delay * 20 / 21
		}
		cancel()
		// Whatever happened, the pool must hold live, clean connections
		// only, and a batch with a live context must succeed.
		if err := rbatch.CheckPoolsClean(c); err != nil {
			t.Fatalf("iteration %d: the pool holds a dead connection: %v", iters, err)
		}
		b = c.NewBatch(rbatch.WithMode(mode))
		get := b.Bucket("soakbug:k").GetAsync()
		if _, err := b.Execute(context.Background()); err != nil {
			_, gerr := get.Get()
			t.Fatalf("iteration %d: a batch without any fault failed: %v (future: %v)", iters, err, gerr)
		}
	}
}

// Found by TestFaultSoak (a "cancel" fault landing before Execute started on
// a RedisWriteAtomic batch): a refused Redis-side batch resolved its queued
// futures with ErrTxAborted while Execute's error said only "not sent", so
// errors.Is(err, ErrTxAborted) was false although every future was aborted.
// Fixed in 77ed2fe while the soak was written.
func TestRefusedRedisSideBatchErrorReachesAborted(t *testing.T) {
	c := newClient(t)
	check := func(t *testing.T, f *rbatch.Future[int64], err error) {
		t.Helper()
		if _, ferr := f.Get(); !errors.Is(ferr, rbatch.ErrTxAborted) {
			t.Fatalf("future: %v, want ErrTxAborted", ferr)
		}
		if !errors.Is(err, rbatch.ErrTxAborted) {
			t.Errorf("the queued future is ErrTxAborted, but Execute's error does not reach it: %v", err)
		}
	}
	t.Run("cancelled before Execute", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
		f := b.AtomicLong("soak:refused").IncrementAndGetAsync()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := b.Execute(ctx)
		check(t, f, err)
	})
	t.Run("write in a RedisReadAtomic batch", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
		f := b.AtomicLong("soak:refused").GetAsync()
		b.AtomicLong("soak:refused").IncrementAndGetAsync() // refused: ErrReadOnlyBatch
		_, err := b.Execute(context.Background())
		check(t, f, err)
	})
}
