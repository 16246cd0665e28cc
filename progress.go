package rbatch

import (
	"sync"
	"sync/atomic"
	"time"
)

// progress calls WithProgress's function: on a timer while the batch runs,
// never two calls at once, skipping a tick while the function still runs,
// and once at the end.
type progress struct {
	fn      func(Progress)
	every   time.Duration
	start   time.Time
	calling sync.Mutex                 // held while fn runs
	timer   atomic.Pointer[time.Timer] // the next tick's
	ended   atomic.Bool

	queued, written, answered, failed atomic.Int64
}

// startProgress starts the ticks; an interval that is not positive (an
// invalid option, which refuses the batch) gives only the last call.
func startProgress(every time.Duration, fn func(Progress), start time.Time) *progress {
	p := &progress{fn: fn, every: every, start: start}
	if every > 0 {
		p.arm()
	}
	return p
}

// arm schedules the next tick. Each tick arms its successor, so no timer
// is reset while its own function may be starting.
func (p *progress) arm() { p.timer.Store(time.AfterFunc(p.every, p.tick)) }

func (p *progress) tick() {
	if p.ended.Load() {
		return
	}
	if !p.calling.TryLock() {
		p.arm() // fn still runs: this tick is skipped
		return
	}
	defer p.calling.Unlock()
	if p.ended.Load() {
		return
	}
	p.fn(p.now())
	p.arm()
}

// now reports the figures so far. Written and answered count each command
// once (progressMarks), so they stay within queued.
func (p *progress) now() Progress {
	queued := int(p.queued.Load())
	return Progress{Queued: queued, Written: min(int(p.written.Load()), queued),
		Answered: min(int(p.answered.Load()), queued), Failed: int(p.failed.Load()), Elapsed: time.Since(p.start)}
}

// finish stops the timer and makes the last call, with c's figures.
func (p *progress) finish(c Counts) {
	p.calling.Lock()
	defer p.calling.Unlock()
	p.ended.Store(true)
	if t := p.timer.Load(); t != nil {
		t.Stop()
	}
	p.fn(finalProgress(c, time.Since(p.start)))
}

// finalProgress is the last Progress of a batch that ended with c.
func finalProgress(c Counts, elapsed time.Duration) Progress {
	return Progress{Queued: c.Total(), Written: c.Total() - c.NotSent,
		Answered: c.Applied + c.Failed + c.Skipped, Failed: c.Failed + c.Aborted + c.NotSent + c.Unknown,
		Elapsed: elapsed}
}

// progressMarks count each command once in a progress report's Written
// and Answered, however many times it is written or answered: the parts of
// a split command, a command sent again after a redirect. So the figures
// while a batch runs stay within its last call's.
type progressMarks struct {
	p                 *progress
	written, answered []atomic.Uint64 // a bit per submission index
	// partOf and partsFrom map a part of a split command to that command
	// (the batch's own, see splitMultiKey).
	partOf    []int
	partsFrom int
}

// newProgressMarks marks the n commands of a batch for p, whose split
// parts (queue positions from partsFrom on) belong to partOf.
func newProgressMarks(p *progress, n int, partOf []int, partsFrom int) *progressMarks {
	w := (n + 63) / 64
	bits := make([]atomic.Uint64, 2*w)
	return &progressMarks{p: p, written: bits[:w], answered: bits[w:], partOf: partOf, partsFrom: partsFrom}
}

// origin is the submission index of the command at queue position i.
func (m *progressMarks) origin(i int) int {
	if m.partOf != nil && i >= m.partsFrom {
		return m.partOf[i-m.partsFrom]
	}
	return i
}

// mark sets command i's bit in bits; true when it was not set.
func mark(bits []atomic.Uint64, i int) bool {
	bit := uint64(1) << (i % 64)
	return bits[i/64].Or(bit)&bit == 0
}

// wrote counts the commands at queue positions idx as written.
func (m *progressMarks) wrote(idx []int) {
	k := 0
	for _, i := range idx {
		if mark(m.written, m.origin(i)) {
			k++
		}
	}
	if k > 0 {
		m.p.written.Add(int64(k))
	}
}

// answer counts the command at queue position i as answered.
func (m *progressMarks) answer(i int) {
	if mark(m.answered, m.origin(i)) {
		m.p.answered.Add(1)
	}
}
