package rbatch_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
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
