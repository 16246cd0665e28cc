// Package queue is one of rbatch's lower layers, under the root package
// that users touch: it holds a batch's queued commands, each encoded to
// RESP as it is queued, kept in submission order with its routing key,
// flags and the sink its outcome goes to, and the command table.
//
// A Queue is not safe for concurrent use; the batch that owns it serializes
// access.
package queue

import (
	"sync"

	"github.com/rbatch/rbatch/internal/resp"
)

// Command describes a command to queue; Queued is what the queue keeps.
type Command struct {
	Name string // upper-case command name
	// KeyArg is the position of the routing key among the arguments (1:
	// the first after the name). That argument is the key whatever its
	// bytes: the empty string and an integer's digits are keys too.
	KeyArg int
	// Key is the routing key when KeyArg is 0: the first argument equal to
	// it, or kept aside when none is. "" with KeyArg 0: no key.
	Key   string
	Flags Flags
	// Future is the batch's handle for the command's outcome; opaque here.
	Future any
	// Err is why the command cannot be sent (an argument that does not
	// encode, a forbidden command). A batch holding one sends nothing.
	Err error
}

// Queued is a queued command. It holds no strings: the command's name and
// routing key are read back from its encoding when needed, so that a batch
// of millions keeps 32 bytes a command here and the garbage collector has
// one pointer a command to follow. What cannot be read back (an error, a key
// that is not one of the arguments) is kept aside.
type Queued struct {
	Future          any
	chunk, off, end int32
	keyArg          uint8 // argument that is the routing key (1: the first after the name); 0: none, or kept aside
	Flags           Flags
}

// aside is what a few commands need beyond their Queued.
type aside struct {
	err       error  // why the command cannot be sent (it has no encoding)
	name, key string // set when err is, or (key) when the key is not an argument
}

// chunkSize is the size of the buffers commands are encoded into: large
// enough that a writer hands the kernel big slices, small enough that a
// growing batch copies little of what it holds (only a command that
// overflows a chunk's room grows that one chunk).
const chunkSize = 64 << 10

// chunkSlack is the room under which a new chunk is started.
const chunkSlack = 4 << 10

// A queue's first chunk is small, firstChunkSize bytes with a new chunk
// started under firstChunkSlack of room, and so is its first block
// (firstBlockSize commands, until it is moved into a full one): most
// batches are a few commands, and with a full chunk and block each, 512
// goroutines of 3-command batches held 192 KiB apiece (125 MB peak RSS,
// against 25 MB with small first buffers).
const (
	firstChunkSize  = 2 << 10
	firstChunkSlack = 256
	firstBlockSize  = 32
)

// blockSize is the number of commands per block of a Queue: full blocks
// are allocated whole and never copied, so a queue of millions grows
// without moving what it holds (only the small first block is copied,
// once, into a full one).
const blockSize = 4096

// maxKeyArg is the last argument position a key is looked for in.
const maxKeyArg = 255

// Queue is an append-only list of encoded commands.
type Queue struct {
	blocks [][]Queued // full blocks of blockSize, and the last one filling
	n      int
	chunks [][]byte
	aside  map[int]aside
	// The pool's boxes of chunks and blocks, handed back by Release; a
	// small queue's one chunk and block are listed inline.
	chunkBoxes []*[]byte
	blockBoxes []*[]Queued
	inline     [1][]byte
	inlineB    [1][]Queued
	inlineBox  [1]*[]byte
	inlineBoxB [1]*[]Queued
	// firstBox is the small first block once its commands moved to a full
	// one: it goes back to its pool only at Release, as what it held may
	// still be read through a pointer taken before the move.
	firstBox *[]Queued
}

// Buffers of finished queues are kept for the next ones (until the garbage
// collector takes them): a batch of a million commands fills some 80 MB of
// chunks and blocks, and first writes to memory fresh from the system cost
// more than encoding into it.
var (
	chunkPool      = sync.Pool{New: func() any { c := make([]byte, 0, chunkSize); return &c }}
	blockPool      = sync.Pool{New: func() any { b := make([]Queued, 0, blockSize); return &b }}
	firstChunkPool = sync.Pool{New: func() any { c := make([]byte, 0, firstChunkSize); return &c }}
	firstBlockPool = sync.Pool{New: func() any { b := make([]Queued, 0, firstBlockSize); return &b }}
)

// Release hands the queue's buffers on to later queues. Nothing may read
// its commands after (Len still answers): the batch calls it when every
// command is resolved and nothing writes them any more.
func (q *Queue) Release() {
	for i, c := range q.chunks {
		box := q.chunkBoxes[i]
		if box == nil { // a command's new encoding (see Reencode)
			continue
		}
		switch cap(c) { // not one grown for a large command
		case chunkSize:
			*box = c[:0]
			chunkPool.Put(box)
		case firstChunkSize:
			*box = c[:0]
			firstChunkPool.Put(box)
		}
	}
	for i, b := range q.blocks {
		clear(b) // drop the futures; past len a pooled block is still zero
		box := q.blockBoxes[i]
		*box = b[:0]
		if cap(b) == firstBlockSize {
			firstBlockPool.Put(box)
		} else {
			blockPool.Put(box)
		}
	}
	if box := q.firstBox; box != nil {
		clear((*box)[:cap(*box)])
		*box = (*box)[:0]
		firstBlockPool.Put(box)
	}
	q.chunks, q.blocks, q.aside, q.chunkBoxes, q.blockBoxes, q.firstBox = nil, nil, nil, nil, nil, nil
	q.inline, q.inlineB, q.inlineBox, q.inlineBoxB = [1][]byte{}, [1][]Queued{}, [1]*[]byte{}, [1]*[]Queued{}
}

// newChunk appends a pooled chunk: a small one first.
func (q *Queue) newChunk() {
	var box *[]byte
	if q.chunks == nil {
		q.chunks, q.chunkBoxes = q.inline[:0], q.inlineBox[:0]
		box = firstChunkPool.Get().(*[]byte)
	} else {
		box = chunkPool.Get().(*[]byte)
	}
	q.chunks = append(q.chunks, *box)
	q.chunkBoxes = append(q.chunkBoxes, box)
}

// chunkFull reports that a command goes in a new chunk rather than in buf.
func chunkFull(buf []byte) bool {
	if cap(buf) == firstChunkSize {
		return cap(buf)-len(buf) < firstChunkSlack
	}
	return len(buf) >= chunkSize || cap(buf)-len(buf) < chunkSlack
}

// newBlock appends a pooled block: a small one first.
func (q *Queue) newBlock() {
	var box *[]Queued
	if q.blocks == nil {
		q.blocks, q.blockBoxes = q.inlineB[:0], q.inlineBoxB[:0]
		box = firstBlockPool.Get().(*[]Queued)
	} else {
		box = blockPool.Get().(*[]Queued)
	}
	q.blocks = append(q.blocks, *box)
	q.blockBoxes = append(q.blockBoxes, box)
}

// growFirst moves the full small first block's commands into a full-size
// block, so that every block but the last holds blockSize of them.
func (q *Queue) growFirst() {
	box := blockPool.Get().(*[]Queued)
	*box = append((*box)[:0], q.blocks[0]...)
	q.firstBox = q.blockBoxes[0]
	q.blocks[0], q.blockBoxes[0] = *box, box
}

// Len returns the number of queued commands.
func (q *Queue) Len() int { return q.n }

// At returns command i (its submission index).
func (q *Queue) At(i int) *Queued { return &q.blocks[i/blockSize][i%blockSize] }

// Err returns why command i cannot be sent, or nil.
func (q *Queue) Err(i int) error { return q.aside[i].err }

// Add encodes c.Name and args and appends the command; it returns its index.
// An encoding error is kept in the command's Err, not returned: the command
// still takes its index, so the batch can say which one was bad.
func (q *Queue) Add(c Command, enc resp.Encoder, args ...any) int {
	return q.add(c, enc, false, args)
}

// AddKeyed is Add with c.Key sent as the first argument, before args.
func (q *Queue) AddKeyed(c Command, enc resp.Encoder, args ...any) int {
	return q.add(c, enc, true, args)
}

func (q *Queue) add(c Command, enc resp.Encoder, keyed bool, args []any) int {
	qc := Queued{Future: c.Future, Flags: c.Flags}
	if c.Err == nil {
		n := len(q.chunks) - 1
		if n < 0 || chunkFull(q.chunks[n]) {
			q.newChunk()
			n++
		}
		buf := q.chunks[n]
		off := len(buf)
		if keyed {
			buf, c.Err = resp.AppendKeyedCommand(buf, enc, c.Name, c.Key, args...)
		} else {
			buf, c.Err = resp.AppendCommand(buf, enc, c.Name, args...)
		}
		q.chunks[n] = buf
		qc.chunk, qc.off, qc.end = int32(n), int32(off), int32(len(buf))
	}
	switch {
	case c.Err != nil:
		qc.chunk, qc.off, qc.end = 0, 0, 0
		q.setAside(aside{err: c.Err, name: c.Name, key: c.Key})
	case keyed:
		qc.keyArg = 1
	case c.KeyArg > 0:
		if c.KeyArg <= maxKeyArg && c.KeyArg <= len(args) {
			qc.keyArg = uint8(c.KeyArg)
		}
	case c.Key == "":
	default:
		if qc.keyArg = argIndex(q.chunks[qc.chunk][qc.off:qc.end], c.Key); qc.keyArg == 0 {
			q.setAside(aside{key: c.Key})
		}
	}
	if q.n%blockSize == 0 {
		q.newBlock()
	} else if q.n == firstBlockSize {
		q.growFirst()
	}
	last := len(q.blocks) - 1
	q.blocks[last] = append(q.blocks[last], qc)
	q.n++
	return q.n - 1
}

func (q *Queue) setAside(a aside) {
	if q.aside == nil {
		q.aside = map[int]aside{}
	}
	q.aside[q.n] = a
}

// argIndex returns the position of the first argument of the encoded
// command p that equals key (1 for the first after the name), or 0.
func argIndex(p []byte, key string) uint8 {
	n, p := header(p)
	for k := 0; k < n && k <= maxKeyArg; k++ {
		var size int
		size, p = header(p)
		if k > 0 && size == len(key) && string(p[:size]) == key {
			return uint8(k)
		}
		p = p[size+2:]
	}
	return 0
}

// Reencode gives command i the encoding enc, in a chunk of its own: a
// command sent again in another form (an EVALSHA as EVAL). Nothing may read
// the queue's commands while it runs.
func (q *Queue) Reencode(i int, enc []byte) {
	q.chunks = append(q.chunks, enc[:len(enc):len(enc)]) // full: later commands go in a chunk of their own
	q.chunkBoxes = append(q.chunkBoxes, nil)
	c := q.At(i)
	c.chunk, c.off, c.end = int32(len(q.chunks)-1), 0, int32(len(enc))
}

// Bytes returns the RESP encoding of command i (empty when it has an Err).
func (q *Queue) Bytes(i int) []byte {
	c := q.At(i)
	if c.end == c.off {
		return nil
	}
	return q.chunks[c.chunk][c.off:c.end]
}

// arg returns argument k of command i's encoding (0 is the name).
func (q *Queue) arg(i, k int) []byte {
	p := q.Bytes(i)
	_, p = header(p)
	for ; ; k-- {
		var size int
		size, p = header(p)
		if k == 0 {
			return p[:size:size]
		}
		p = p[size+2:]
	}
}

// NameBytes returns command i's name as the queue holds it: read it, do not
// keep or change it. Cheaper than Name where only a comparison is needed.
func (q *Queue) NameBytes(i int) []byte {
	if q.At(i).end == 0 {
		return []byte(q.aside[i].name)
	}
	return q.arg(i, 0)
}

// Name returns command i's name.
func (q *Queue) Name(i int) string {
	if q.At(i).end == 0 {
		return q.aside[i].name
	}
	return nameOf(q.arg(i, 0))
}

// KeyBytes returns command i's routing key, nil when it has none. The bytes
// are the queue's: read them, do not keep or change them.
func (q *Queue) KeyBytes(i int) []byte {
	if k := q.At(i).keyArg; k != 0 {
		return q.arg(i, int(k))
	}
	if key := q.aside[i].key; key != "" {
		return []byte(key)
	}
	return nil
}

// Key returns command i's routing key, "" when it has none.
func (q *Queue) Key(i int) string {
	if k := q.At(i).keyArg; k != 0 {
		return string(q.arg(i, int(k)))
	}
	return q.aside[i].key
}

// NArgs returns the number of arguments of command i (without its name).
func (q *Queue) NArgs(i int) int {
	n, _ := header(q.Bytes(i))
	return n - 1
}

// Args returns the arguments of command i (without its name), read back
// from its encoding.
func (q *Queue) Args(i int) [][]byte {
	p := q.Bytes(i)
	n, p := header(p)
	args := make([][]byte, 0, n)
	for k := 0; k < n; k++ {
		var size int
		size, p = header(p)
		if k > 0 {
			args = append(args, p[:size:size])
		}
		p = p[size+2:]
	}
	return args
}

// header reads "*N\r\n" or "$N\r\n" written by AppendCommand.
func header(p []byte) (int, []byte) { return resp.Header(p) }

// Span returns the encoding of commands i, i+1, … as long as they lie back to
// back in one buffer, and how many commands it covers (at least 1). Writers use
// it to hand large slices to the socket.
func (q *Queue) Span(idx []int) (b []byte, n int) {
	first := q.At(idx[0])
	end := first.end
	n = 1
	for n < len(idx) {
		c := q.At(idx[n])
		if c.chunk != first.chunk || c.off != end {
			break
		}
		end = c.end
		n++
	}
	return q.chunks[first.chunk][first.off:end], n
}
