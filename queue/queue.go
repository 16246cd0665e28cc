// Package queue holds a batch's queued commands: each encoded to RESP as it
// is queued, kept in submission order with its routing key, flags and the
// sink its outcome goes to.
//
// A Queue is not safe for concurrent use; the batch that owns it serializes
// access.
package queue

// Command describes a command to queue; Queued is what the queue keeps.
type Command struct {
	Name  string // upper-case command name
	Key   string // routing key; "" for a command without one
	Flags Flags
	// Future is the batch's handle for the command's outcome; opaque here.
	Future any
	// Err is why the command cannot be sent (an argument that does not
	// encode, a forbidden command). A batch holding one sends nothing.
	Err error
}

// Queued is a queued command. Errors are kept aside (Queue.Err): they are
// rare, and a million commands should not each carry an empty one.
type Queued struct {
	Name            string
	Key             string
	Future          any
	chunk, off, end int32
	Flags           Flags
}

// chunkSize is the size of the buffers commands are encoded into: large
// enough that a writer hands the kernel big slices, small enough that a
// growing batch copies little of what it holds (only a command that
// overflows a chunk's room grows that one chunk).
const chunkSize = 64 << 10

// chunkSlack is the room under which a new chunk is started.
const chunkSlack = 4 << 10

// blockSize is the number of commands per block of a Queue: blocks are
// allocated whole and never copied, so a queue of millions grows without
// moving what it holds.
const blockSize = 4096

// Queue is an append-only list of encoded commands.
type Queue struct {
	blocks [][]Queued // full blocks of blockSize, and the last one filling
	n      int
	chunks [][]byte
	errs   map[int]error // why a command cannot be sent, by index
}

// Len returns the number of queued commands.
func (q *Queue) Len() int { return q.n }

// At returns command i (its submission index).
func (q *Queue) At(i int) *Queued { return &q.blocks[i/blockSize][i%blockSize] }

// Err returns why command i cannot be sent, or nil.
func (q *Queue) Err(i int) error { return q.errs[i] }

// Add encodes c.Name and args and appends the command; it returns its index.
// An encoding error is kept in the command's Err, not returned: the command
// still takes its index, so the batch can say which one was bad.
func (q *Queue) Add(c Command, enc Encoder, args ...any) int {
	return q.add(c, enc, false, args)
}

// AddKeyed is Add with c.Key sent as the first argument, before args.
func (q *Queue) AddKeyed(c Command, enc Encoder, args ...any) int {
	return q.add(c, enc, true, args)
}

func (q *Queue) add(c Command, enc Encoder, keyed bool, args []any) int {
	qc := Queued{Name: c.Name, Key: c.Key, Future: c.Future, Flags: c.Flags}
	if c.Err == nil {
		n := len(q.chunks) - 1
		if n < 0 || len(q.chunks[n]) >= chunkSize || cap(q.chunks[n])-len(q.chunks[n]) < chunkSlack {
			q.chunks = append(q.chunks, make([]byte, 0, chunkSize))
			n++
		}
		buf := q.chunks[n]
		off := len(buf)
		if keyed {
			buf, c.Err = AppendKeyedCommand(buf, enc, c.Name, c.Key, args...)
		} else {
			buf, c.Err = AppendCommand(buf, enc, c.Name, args...)
		}
		q.chunks[n] = buf
		qc.chunk, qc.off, qc.end = int32(n), int32(off), int32(len(buf))
	}
	if c.Err != nil {
		if q.errs == nil {
			q.errs = map[int]error{}
		}
		q.errs[q.n] = c.Err
	}
	if q.n%blockSize == 0 {
		q.blocks = append(q.blocks, make([]Queued, 0, blockSize))
	}
	last := len(q.blocks) - 1
	q.blocks[last] = append(q.blocks[last], qc)
	q.n++
	return q.n - 1
}

// Bytes returns the RESP encoding of command i (empty when it has an Err).
func (q *Queue) Bytes(i int) []byte {
	if q.errs[i] != nil {
		return nil
	}
	c := q.At(i)
	return q.chunks[c.chunk][c.off:c.end]
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
func header(p []byte) (int, []byte) {
	n, i := 0, 1
	for ; p[i] != '\r'; i++ {
		n = n*10 + int(p[i]-'0')
	}
	return n, p[i+2:]
}

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
