package rbatch_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/rbatch/rbatch"
)

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
