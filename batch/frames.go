package batch

import (
	"strconv"
	"sync/atomic"
)

// The wire layout of a group, described once and walked by both the writer
// (which sends each frame) and the reader (which reads each frame's
// replies). A new wire element is a new frame kind: its bytes here, its
// replies in readFrame.
//
//	[prefix…] [CLIENT REPLY OFF] [ASKING] [MULTI] cmd… [CLIENT SETNAME mark] [EXEC | DISCARD] [CLIENT REPLY ON] [CLIENT GETNAME] [WAIT | WAITAOF]
//
// The mark and its check are for a transaction run with replies off: with
// them off, EXEC's EXECABORT (a queue-time error discarded it) is never
// read, so the transaction also names the connection, and the name read
// back once replies are on says whether it ran.

// frameKind says what a frame is, and so what its replies are.
type frameKind uint8

const (
	framePrefix   frameKind = iota // commands sent first (SCRIPT LOAD): one reply each, kept in PrefixReplies
	frameReplyOff                  // CLIENT REPLY OFF: silent, unless the server refuses it
	frameAsking                    // ASKING before MULTI (an ASK-redirected transaction): +OK, dropped
	frameMulti                     // MULTI: +OK, or its refusal (the commands then run one by one)
	frameCommands                  // the group's commands: one reply each (QUEUED inside MULTI), each after ASKING's +OK when askEach
	frameMark                      // CLIENT SETNAME mark, the transaction's last command when replies are off: silent
	frameExec                      // EXEC: the transaction's replies
	frameDiscard                   // DISCARD: +OK, nothing applied
	frameReplyOn                   // CLIENT REPLY ON: +OK, the first reply since OFF
	frameCheck                     // CLIENT GETNAME: the mark when the transaction ran
	frameTail                      // WAIT or WAITAOF: the replicas' acknowledgement
)

// frame is one element of a group's layout.
type frame struct {
	kind  frameKind
	bytes []byte // the encoded command (nil for framePrefix: see layout.prefix)
}

// maxFrames bounds the frames on either side of the commands.
const maxFrames = 5

// layout is a group's frames: those written before its commands (head)
// and after them (end). It is built once per group, in place (no
// allocation), and read by the writer and the reader alike.
type layout struct {
	head, end   [maxFrames]frame
	nHead, nEnd int
	prefix      [][]byte // framePrefix's encoded commands
	askEach     bool     // ASKING before each command (an ASK redirect outside a transaction)
	mark        []byte   // the name frameMark gives the connection (nil: no mark)
}

func (l *layout) addHead(f frame) { l.head[l.nHead] = f; l.nHead++ }
func (l *layout) addEnd(f frame)  { l.end[l.nEnd] = f; l.nEnd++ }

// before returns the frames before the commands; after those after.
func (l *layout) before() []frame { return l.head[:l.nHead] }
func (l *layout) after() []frame  { return l.end[:l.nEnd] }

// build lays out a group of p with prefix sent first; discard ends it with
// DISCARD instead of EXEC and the tail (a Redis-side queue dropped).
func (l *layout) build(p Plan, prefix [][]byte, discard bool) {
	// Only what before and after read is reset: frames past the counts are
	// never read, and zeroing the arrays costs more than the build.
	l.nHead, l.nEnd, l.prefix, l.askEach = 0, 0, prefix, p.AskEach
	if len(prefix) > 0 {
		l.addHead(frame{kind: framePrefix})
	}
	if p.SkipResult {
		l.addHead(frame{kind: frameReplyOff, bytes: clientReplyOff})
	}
	if p.Atomic {
		if p.AskMulti {
			l.addHead(frame{kind: frameAsking, bytes: Asking})
		}
		l.addHead(frame{kind: frameMulti, bytes: multi})
	}
	l.buildEnd(p, discard)
}

// buildEnd lays out the frames after the commands.
func (l *layout) buildEnd(p Plan, discard bool) {
	l.nEnd, l.mark = 0, nil
	switch {
	case discard:
		l.addEnd(frame{kind: frameDiscard, bytes: discardCmd})
	case p.Atomic:
		if p.SkipResult {
			l.mark = newMark()
			l.addEnd(frame{kind: frameMark, bytes: mustEncode("CLIENT", "SETNAME", l.mark)})
		}
		l.addEnd(frame{kind: frameExec, bytes: exec})
	}
	if p.SkipResult {
		l.addEnd(frame{kind: frameReplyOn, bytes: clientReplyOn})
	}
	if l.mark != nil {
		l.addEnd(frame{kind: frameCheck, bytes: clientGetName})
	}
	if p.Tail != nil && !discard {
		l.addEnd(frame{kind: frameTail, bytes: p.Tail})
	}
}

// writeFrames hands frames of l to conn (buffered).
func (l *layout) writeFrames(conn Conn, frames []frame) error {
	for _, f := range frames {
		if f.kind == framePrefix {
			for _, b := range l.prefix {
				if _, err := conn.Write(b); err != nil {
					return err
				}
			}
			continue
		}
		if f.bytes != nil {
			if _, err := conn.Write(f.bytes); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendFrames appends the bytes of frames of l to dst.
func (l *layout) appendFrames(dst []byte, frames []frame) []byte {
	for _, f := range frames {
		if f.kind == framePrefix {
			for _, b := range l.prefix {
				dst = append(dst, b...)
			}
			continue
		}
		dst = append(dst, f.bytes...)
	}
	return dst
}

// marks numbers the marks: each transaction's is its own, so a name left
// by an earlier one never passes for it.
var marks atomic.Uint64

func newMark() []byte {
	return strconv.AppendUint([]byte("rbatch-tx-"), marks.Add(1), 10)
}
