package rbatch

import "context"

// What a round of a batch leaves to do: commands to retry, to send where a
// redirect says, or to send again with their scripts, and whether the slot
// map is to be reloaded first.

// followUp is what a round leaves to do for one entry's commands.
type followUp struct {
	retry   []int            // safe to send again after RetryInterval
	moved   map[string][]int // MOVED: send to the slot's new owner
	asked   map[string][]int // ASK: send to that node, after ASKING
	again   map[string][]int // NOSCRIPT: send to that node again, its scripts loaded
	refresh bool             // the node failed: reload the slot map
	failed  string           // the node that failed (asked for the map last)
	err     error            // about the node as a whole (sync, MULTI refused)
	slot    int              // the entry's transaction slot (entry.slot)
}

// refresh reloads the slot map after a round in which a node failed,
// asking the nodes that failed last, and waits for it no longer than the
// batch waits for a reply (its response timeout, or else the read
// timeout): a stopped node asked first would hold it that long, past the
// bound the batch's commands ended by. On failure the old map routes, and
// errors tell.
func (b *Batch) refresh(ctx context.Context, gen uint64, failed []string) {
	bound := b.plan.ResponseTimeout
	if bound <= 0 {
		bound = b.c.readTimeout
	}
	if bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	_ = b.c.router.Refresh(ctx, gen, failed...)
}

// nextRound gathers the follow-ups of a round's entries.
type nextRound struct {
	retry        []int
	moved, asked map[dest][]int
	again        map[dest][]int // NOSCRIPT: back to the same node, its scripts loaded
	refresh      bool
	failed       []string // the nodes that failed
	errs         []error
	redirects    map[int]int // per command, how often it was redirected
}

// leavesWork reports whether the round left commands to send again.
func (n *nextRound) leavesWork() bool {
	return len(n.retry)+len(n.moved)+len(n.asked)+len(n.again) > 0
}

func (n *nextRound) add(o followUp) {
	if o.err != nil {
		n.errs = append(n.errs, o.err)
	}
	n.retry = append(n.retry, o.retry...)
	if len(o.moved)+len(o.asked) > 0 && n.redirects == nil {
		n.redirects = map[int]int{}
	}
	for addr, idx := range o.moved {
		addToDest(&n.moved, dest{addr, o.slot}, limit(idx, n.redirects))
	}
	for addr, idx := range o.asked {
		addToDest(&n.asked, dest{addr, o.slot}, limit(idx, n.redirects))
	}
	for addr, idx := range o.again {
		addToDest(&n.again, dest{addr, o.slot}, idx)
	}
	n.refresh = n.refresh || o.refresh || len(o.moved) > 0
	if o.failed != "" {
		n.failed = append(n.failed, o.failed)
	}
}

// dest is where a round sends commands again: a node, and with
// WithTransactionPerSlot the slot whose transaction they are (-1 otherwise).
type dest struct {
	addr string
	slot int
}

func addToDest(m *map[dest][]int, d dest, cmds []int) {
	if *m == nil {
		*m = map[dest][]int{}
	}
	(*m)[d] = append((*m)[d], cmds...)
}

// limit counts a redirect for each command and keeps those still under the
// bound; the others keep the redirect error as their outcome.
func limit(idx []int, redirects map[int]int) []int {
	out := idx[:0:0]
	for _, i := range idx {
		if redirects[i]++; redirects[i] <= maxRedirects {
			out = append(out, i)
		}
	}
	return out
}
