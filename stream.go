package rbatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/ctxerr"
	"github.com/rbatch/rbatch/queue"
)

// maxFailuresKept bounds the failed commands a Streaming batch's
// *BatchError lists; Counts has them all.
const maxFailuresKept = 1000

// segmentCommands bounds the commands of one segment of a stream.
const segmentCommands = 1 << 16

// stream runs a Streaming batch. Its commands are queued into segments,
// each an InMemory batch of its own that a background runner starts as
// soon as the previous one is written: whatever was queued meanwhile goes
// next, on the same connection per node (streamLines), so the wire never
// waits for the batch to be filled nor drains between segments, and a
// segment is dropped once answered, so memory holds only what is queued
// and in flight. At most two segments are in flight, written and read in
// order, and a segment's redirects and retries wait for the one before it
// to end, so commands on one key keep their order.
type stream struct {
	b        *Batch
	ctx      context.Context // the background work's: WithContext's, ended by Discard or Execute's ctx
	cancel   context.CancelCauseFunc
	limit    int // Config.StreamBuffer: the bytes held before queueing blocks
	segBytes int // a segment is sealed at this size
	start    time.Time
	hookEnd  func(*BatchResult, error) // the hooks' BatchEnd, nil without hooks
	// info is what BatchEnd hears of the batch: its commands, counted and
	// named as they are queued.
	info     BatchInfo
	progress *progress // nil without WithProgress

	mu        sync.Mutex
	cond      *sync.Cond // signalled when a segment ends, one is sealed, or the stream closes
	cur       *Batch     // the segment being filled (nil: none yet)
	sealed    []*Batch   // full segments waiting for the runner, in order
	held      int        // bytes of cur, sealed and the running segment
	queued    int        // commands queued: the next one's index
	running   bool       // a runner goroutine is at work
	closed    bool       // Execute or Discard was called: no more commands
	discarded bool
	// stopped, once set (a condition was added, which a stream cannot
	// keep), fails every command queued afterwards: not sent.
	stopped error
	scripts map[string]string // SHA1 → body of the scripts queued so far

	lines streamLines // one connection per node for the segments
	// wrote are the primaries the segments wrote to so far, whose reads
	// stay on them (ReadFrom Replica or PreferReplica).
	wrote writtenPrimaries

	// What the segments did, gathered by the runner.
	counts Counts
	// unsucceeded counts the commands that did not succeed (see BatchError).
	unsucceeded int
	failed      []CommandError
	// causes are failures past those listed in failed that tell their
	// causes (keepCauses).
	causes   causes
	nodes    []NodeResult
	nodeFrom []time.Time     // when each of nodes first took a connection
	applied  map[string]bool // the nodes where a command may have been applied: those syncNodes waits on
	nodeErrs []error
	synced   int
	anySync  bool
}

func newStream(b *Batch) *stream {
	ctx, cancel := context.WithCancelCause(b.backgroundContext())
	s := &stream{b: b, ctx: ctx, cancel: cancel, limit: b.c.streamBuffer, start: time.Now()}
	s.lines.tail, s.lines.tailTimeout = b.plan.Tail, b.plan.TailTimeout
	s.lines.retries = b.opts.RetryAttempts
	s.segBytes = max(s.limit/4, 1)
	s.cond = sync.NewCond(&s.mu)
	if hs := b.c.hooks.installed(); hs != nil {
		b.run.hooks = hs
		s.info = BatchInfo{Options: *b.opts, Start: s.start, Addr: b.c.addr}
		s.ctx, s.hookEnd = batchHooks(s.ctx, hs, &s.info)
	}
	if b.opts.Progress != nil {
		s.progress = startProgress(b.opts.ProgressEvery, b.opts.Progress, s.start)
	}
	return s
}

// newSegment starts the segment whose first command has index base.
func (s *stream) newSegment(base int) *Batch {
	b := s.b
	opts := *b.opts
	opts.Mode, opts.Progress, opts.Context = InMemory, nil, nil
	opts.Sync, opts.SyncAOF = false, false // the stream waits once per node, at its end (syncNodes)
	seg := &Batch{c: b.c, opts: &opts, work: &work{segment: true, base: base, streamSyncs: b.syncs()}}
	seg.plan = seg.makePlan()
	seg.sig.started.Store(true) // a streaming command's Get waits for its segment: it is on its way
	seg.run.hooks = b.run.hooks
	seg.run.progress = s.progress // written and answered count in as the segment runs
	if b.c.readFrom != Primary {
		seg.run.wrote = &s.wrote
	}
	return seg
}

// pushStream queues one command of a Streaming batch. It blocks while the
// stream holds its limit of bytes. A command that cannot be sent (no codec,
// forbidden, too long, or queued once WithContext's context ended) fails
// alone, at once, and counts not sent.
func pushStream[T any](b *Batch, dec func(any) (T, error), c queue.Command, keyFirst bool, args []any) *Future[T] {
	s := b.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed && s.held >= s.limit && s.ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.closed {
		return failedFuture[T](ErrAlreadyExecuted)
	}
	if s.cur == nil {
		s.cur = s.newSegment(s.queued)
	}
	seg := s.cur
	f := push(seg, dec, c, keyFirst, args)
	i := int(f.index)
	f.index = int32(seg.base + i)
	err := seg.admit(i)
	if err == nil {
		err = b.c.proxyCommandRefusal(&seg.q, i)
	}
	if err == nil && s.stopped != nil {
		err = s.stopped
	}
	if err == nil && s.ctx.Err() != nil { // WithContext's ended: nothing more is sent
		err = ctxerr.Of(s.ctx)
	}
	if err != nil {
		failQueued(seg, f, i, err) // it goes nowhere: its future fails now
	} else if wait, blocking := blockWait(c.Name, args); blocking {
		seg.blockFor(wait) // the part's replies wait behind it
	}
	n := len(seg.q.Bytes(i))
	seg.bytes += n
	s.held += n
	s.queued++
	if s.hookEnd != nil {
		s.nameCommand(c.Name)
	}
	if s.progress != nil {
		s.progress.queued.Store(int64(s.queued))
	}
	if seg.bytes >= s.segBytes || seg.q.Len() >= segmentCommands {
		s.sealLocked()
	}
	s.wakeLocked()
	return f
}

// addScript records a script queued with EvalAsync: the segment it lands in
// loads it.
func (s *stream) addScript(sha, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scripts == nil {
		s.scripts = map[string]string{}
	}
	s.scripts[sha] = body
}

// sealLocked hands the current segment to the runner.
func (s *stream) sealLocked() {
	if s.cur == nil || s.cur.q.Len() == 0 {
		return
	}
	if len(s.scripts) > 0 {
		s.cur.scripts = make(map[string]string, len(s.scripts))
		for sha, body := range s.scripts {
			s.cur.scripts[sha] = body
		}
	}
	s.sealed = append(s.sealed, s.cur)
	s.cur = nil
}

// wakeLocked starts a runner when there is work and none runs.
func (s *stream) wakeLocked() {
	if !s.running && (len(s.sealed) > 0 || (s.cur != nil && s.cur.q.Len() > 0)) {
		s.running = true
		go s.run()
	}
}

// run executes segments while there are any: when none is sealed it seals
// the one being filled, so what is queued goes as soon as the wire is free.
// A segment starts once the one before it has its frames on the lines, and
// at most two are in flight (see streamLines). It returns when there is
// nothing left to send and every segment ended.
func (s *stream) run() {
	var prev chan struct{}  // the previous segment's end (nil: none in flight)
	var before *segmentPipe // its pipe
	for {
		s.mu.Lock()
		if len(s.sealed) == 0 {
			s.sealLocked()
		}
		if len(s.sealed) == 0 {
			if prev != nil { // wait for it: more may be queued meanwhile
				s.mu.Unlock()
				<-prev
				prev, before = nil, nil
				continue
			}
			s.running = false
			s.cond.Broadcast()
			s.mu.Unlock()
			return
		}
		seg := s.sealed[0]
		s.sealed = s.sealed[1:]
		discarded := s.discarded
		s.mu.Unlock()

		done := make(chan struct{})
		seg.pipe = &segmentPipe{lines: &s.lines, prev: prev, before: before, appended: make(chan struct{})}
		go func() {
			defer close(done)
			s.runSegment(seg, discarded)
			seg.pipe.before = nil // no chain of ended segments kept alive
			s.mu.Lock()
			s.held -= seg.bytes
			s.cond.Broadcast()
			s.mu.Unlock()
		}()
		select {
		case <-seg.pipe.appended:
		case <-done:
		}
		if prev != nil {
			<-prev
		}
		prev, before = done, seg.pipe
	}
}

// runSegment executes one segment and adds what it did to the stream's
// figures; its futures resolve as it ends.
func (s *stream) runSegment(seg *Batch, discarded bool) {
	seg.start()
	var res *BatchResult
	var err error
	if discarded {
		seg.resolveAll(ErrDiscarded)
		res, err = seg.collect(nil, nil)
	} else {
		res, err = seg.executeAll(s.ctx)
	}
	var failed, past []CommandError
	bad := seg.run.unsucceeded // a reply that did not decode counts as applied, yet did not succeed
	if bad > 0 {
		limit := 0
		if s.wantsFailuresFrom(seg.base) {
			limit = min(maxFailuresKept, bad)
		}
		failed, past = seg.failuresAndCauses(limit, bad > limit)
	}
	if m := seg.run.marks; m != nil && seg.plan.SkipResult {
		// With replies off, a part's end is their answer; with them read
		// (CLIENT REPLY refused) each counted as it came: marked once.
		for i := 0; i < int(seg.submitted); i++ {
			if seg.q.At(i).Future.(outcome).failure() == ErrResultSkipped {
				m.answer(i)
			}
		}
	}
	seg.end()

	s.mu.Lock()
	defer s.mu.Unlock()
	c := res.Counts
	s.counts.Applied += c.Applied
	s.counts.Failed += c.Failed
	s.unsucceeded += bad
	s.counts.Aborted += c.Aborted
	s.counts.NotSent += c.NotSent
	s.counts.Unknown += c.Unknown
	s.counts.Skipped += c.Skipped
	if p := s.progress; p != nil {
		p.failed.Add(int64(c.Failed + c.Aborted + c.NotSent + c.Unknown))
	}
	for k, nr := range res.Nodes {
		s.addNode(nr, k >= len(seg.run.stats.at) || seg.run.stats.at[k].wrote)
	}
	s.keepFailures(failed)
	s.keepCauses(past)
	var berr *BatchError
	if errors.As(err, &berr) && berr.Err != nil && len(s.nodeErrs) < 10 {
		s.nodeErrs = append(s.nodeErrs, berr.Err)
	}
}

// nameCommand counts a queued command into the hooks' BatchInfo, whose
// Command stays the name every command shares. Under s.mu.
func (s *stream) nameCommand(name string) {
	s.info.Commands++
	switch {
	case s.info.Commands == 1:
		s.info.Command = name
	case name != s.info.Command: // "" once two differed: it stays so
		s.info.Command = ""
	}
}

// refuseCondition records a condition added to the stream, which it
// cannot keep: the condition fails, Execute's error reports it, and the
// commands queued after it, which it was to guard, fail not sent (those
// before it were sent as they were queued).
func (s *stream) refuseCondition(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped == nil {
		s.stopped = err
	}
	if len(s.nodeErrs) < 10 {
		s.nodeErrs = append(s.nodeErrs, err)
	}
}

// wantsFailuresFrom reports whether failures of commands from index base on
// may still be among the first maxFailuresKept.
func (s *stream) wantsFailuresFrom(base int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.failed) < maxFailuresKept || s.failed[len(s.failed)-1].Index > base
}

// keepFailures adds a segment's failures to the stream's, which stay the
// first maxFailuresKept by submission index: segments may end out of
// order (one retried ends after the next). Under s.mu.
func (s *stream) keepFailures(failed []CommandError) {
	if len(failed) == 0 {
		return
	}
	sorted := len(s.failed) == 0 || s.failed[len(s.failed)-1].Index < failed[0].Index
	s.failed = append(s.failed, failed...)
	if !sorted {
		slices.SortFunc(s.failed, func(a, b CommandError) int { return cmp.Compare(a.Index, b.Index) })
	}
	if len(s.failed) > maxFailuresKept {
		s.keepCauses(s.failed[maxFailuresKept:])
		clear(s.failed[maxFailuresKept:])
		s.failed = s.failed[:maxFailuresKept]
	}
}

// keepCauses offers failures past the listed ones to the stream's causes:
// errors.Is and errors.As on Execute's error reach every cause, though the
// list stops at maxFailuresKept. Under s.mu.
func (s *stream) keepCauses(past []CommandError) {
	for _, c := range past {
		s.causes.offer(c)
	}
}

// failures lists the batch's failed commands (every one that did not
// succeed, not sent ones included) in submission order, at most limit; a
// stream's segment gives their index in the stream.
func (b *Batch) failures(limit int) []CommandError {
	out, _ := b.failuresAndCauses(limit, false)
	return out
}

// failuresAndCauses is failures, and with causes, past holds failures
// past the limit that tell their causes (see causes).
func (b *Batch) failuresAndCauses(limit int, withCauses bool) (listed, past []CommandError) {
	listed = make([]CommandError, 0, limit) // sized once: a cancelled million-command batch fails them all
	var cs causes
	for i := 0; i < int(b.submitted); i++ {
		if len(listed) == limit && (!withCauses || cs.done()) {
			break
		}
		err := b.q.At(i).Future.(outcome).failure()
		if err == nil || err == ErrResultSkipped {
			continue
		}
		c := CommandError{Index: b.base + i, Command: b.q.Name(i), Err: err}
		if len(listed) < limit {
			listed = append(listed, c)
			continue
		}
		cs.offer(c)
	}
	return listed, cs.kept
}

// addNode merges a segment's figures for one node into the stream's.
// wrote reports that a command may have been applied there.
func (s *stream) addNode(nr NodeResult, wrote bool) {
	if wrote {
		if s.applied == nil {
			s.applied = map[string]bool{}
		}
		s.applied[nr.Addr] = true
	}
	now := time.Now()
	from := now.Add(-nr.Duration)
	for i := range s.nodes {
		if p := &s.nodes[i]; p.Addr == nr.Addr {
			// A stream goes in parts, two at a time: the node's figures are
			// its rounds (not its parts) and the time from its first
			// connection to its last reply (not the parts' times summed).
			if from.Before(s.nodeFrom[i]) {
				s.nodeFrom[i] = from
			}
			p.Commands += nr.Commands
			p.Attempts = max(p.Attempts, nr.Attempts)
			p.Duration = now.Sub(s.nodeFrom[i])
			p.Moved += nr.Moved
			p.Asked += nr.Asked
			p.SyncedReplicas = min(p.SyncedReplicas, nr.SyncedReplicas)
			p.SyncedLocal = p.SyncedLocal && nr.SyncedLocal
			return
		}
	}
	s.nodes = append(s.nodes, nr)
	s.nodeFrom = append(s.nodeFrom, from)
}

// close refuses the commands queued from now on (ErrAlreadyExecuted),
// waking those waiting for room.
func (s *stream) close() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// finish closes the stream, waits for every segment to be answered (ctx
// ending first stops them as it would an InMemory batch), and returns the
// batch's result.
func (s *stream) finish(ctx context.Context) (*BatchResult, error) {
	// The stream's context ends with Execute's cause (its deadline, say).
	if err := ctxerr.Of(ctx); err != nil {
		s.cancel(err) // ended already: before the last part is sealed, not when AfterFunc's goroutine runs
	}
	stop := context.AfterFunc(ctx, func() { s.cancel(ctxerr.Of(ctx)) })
	defer stop()
	s.mu.Lock()
	s.sealLocked()
	s.closed = true
	s.wakeLocked()
	for s.running {
		s.cond.Wait()
	}
	discarded := s.discarded
	s.mu.Unlock()
	if s.b.plan.Tail != nil && !discarded {
		s.syncNodes()
	}
	s.lines.end(!s.b.stateful)
	s.cancel(nil)

	res := &BatchResult{Responses: []any{}, Nodes: s.nodes, Counts: s.counts}
	if s.anySync {
		res.SyncedReplicas = s.synced
	}
	var err error
	if len(s.failed) > 0 || len(s.nodeErrs) > 0 {
		counts := s.counts
		err = &BatchError{Err: errors.Join(s.nodeErrs...), Commands: s.failed, beyond: s.causes.kept, counts: &counts, unsucceeded: s.unsucceeded}
	}
	if s.progress != nil {
		s.progress.finish(res.Counts)
	}
	if s.hookEnd != nil {
		s.hookEnd(res, err)
	}
	return res, err
}

// syncNodes sends WithSync's WAIT (or WithSyncAOF's WAITAOF) once per node,
// after the stream's last command, on the connection that carried its
// writes, all nodes at once: a node's figure is its replicas'
// acknowledgement of everything the stream wrote there. A node whose
// acknowledgement cannot be had (connection failed, stream cancelled)
// counts 0 replicas, and Execute's error says why.
func (s *stream) syncNodes() {
	used := s.lines.all()
	type ack struct {
		addr string
		r    batch.Result
		end  time.Time // when the reply came
	}
	acks := make([]ack, len(used))
	var wg sync.WaitGroup
	for i, np := range used {
		acks[i].addr = np.node.Addr()
		if !s.applied[acks[i].addr] { // it applied nothing (its commands moved away): nothing to wait for
			acks[i].r.Synced = true
			continue
		}
		if np.pipe == nil { // its last connection failed: nothing confirms its writes
			acks[i].r = batch.Result{Err: errWritesLost}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks[i].r = np.pipe.Sync(s.ctx, s.b.plan.Tail, s.b.plan.TailTimeout)
			acks[i].end = time.Now()
		}()
	}
	wg.Wait()
	// The connections given back before the end had their WAIT then.
	s.lines.mu.Lock()
	for node, rs := range s.lines.acks {
		for _, r := range rs {
			acks = append(acks, ack{addr: node.Addr(), r: r})
		}
	}
	s.lines.mu.Unlock()
	s.anySync = true
	s.synced = 0
	first := true
	synced := map[string]bool{} // the nodes whose figures an ack set already: the fewest stays
	for _, a := range acks {
		if !s.applied[a.addr] {
			continue
		}
		if first || a.r.Replicas < s.synced {
			s.synced, first = a.r.Replicas, false
		}
		var err error
		switch {
		case a.r.SyncErr != nil:
			err = syncFailed(a.r.SyncErr)
		case !a.r.Synced:
			err = fmt.Errorf("sync not answered: %w", &unknownError{cause: a.r.Err})
		}
		if err != nil {
			s.synced = 0
			if len(s.nodeErrs) < 10 {
				s.nodeErrs = append(s.nodeErrs, fmt.Errorf("%s: %w", a.addr, err))
			}
		}
		for k := range s.nodes {
			if n := &s.nodes[k]; n.Addr == a.addr {
				if synced[a.addr] {
					n.SyncedReplicas, n.SyncedLocal = min(n.SyncedReplicas, a.r.Replicas), n.SyncedLocal && a.r.Local
				} else {
					n.SyncedReplicas, n.SyncedLocal = a.r.Replicas, a.r.Local
				}
				synced[a.addr] = true
				if !a.end.IsZero() { // its last reply is its WAIT's
					n.Duration = a.end.Sub(s.nodeFrom[k])
				}
			}
		}
	}
}

// errWritesLost says a node's writes cannot be acknowledged: its last
// connection failed.
var errWritesLost = errors.New("the node's connection failed: nothing can confirm its writes")

// discard stops the stream: what is being sent ends as a cancelled batch's
// would (written and unanswered: unknown), what was not sent yet ends
// ErrDiscarded.
func (s *stream) discard() {
	s.mu.Lock()
	s.discarded = true
	s.mu.Unlock()
	s.cancel(ErrDiscarded) // what a running segment did not write ends not sent, ErrDiscarded
	s.finish(context.Background())
}

// withoutBad returns idx without the commands of a stream's segment that
// failed at queueing (b.bad, ascending). idx need not be ascending: the
// parts of split multi-key commands sit where their parents were.
func (b *Batch) withoutBad(idx []int) []int {
	out := idx[:0]
	for _, i := range idx {
		if _, bad := slices.BinarySearch(b.bad, i); !bad {
			out = append(out, i)
		}
	}
	return out
}
