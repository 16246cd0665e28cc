package resp

import (
	"bufio"
	"fmt"
	"io"

	"github.com/gomodule/redigo/redis"
)

// ReadBufferSize is a connection's read buffer: one socket read brings in
// thousands of small replies.
const ReadBufferSize = 64 << 10

// Reader reads RESP2 replies into the values redigo gives: int64,
// []byte, a status string, []any, nil, and redis.Error for an error reply
// (a value, not an error: inside an array it is one element among others).
// The statuses a batch reads by the million (+OK, +QUEUED) come back as
// shared strings, with nothing allocated.
type Reader struct {
	br *bufio.Reader
}

// NewReader returns a reader of the replies in r with a buffer of size
// bytes (ReadBufferSize when 0).
func NewReader(r io.Reader, size int) *Reader {
	if size == 0 {
		size = ReadBufferSize
	}
	return &Reader{br: bufio.NewReaderSize(r, size)}
}

// Read reads the next reply.
func (r *Reader) Read() (any, error) { return r.read() }

// Await waits until a reply's first byte is there to read, taking nothing.
func (r *Reader) Await() error {
	_, err := r.br.Peek(1)
	return err
}

// Buffered returns how many bytes were read from the source and not yet
// consumed as replies.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ProtocolError is a reply that is not RESP2: the connection is unusable.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "rbatch: protocol error: " + e.Msg }

func (r *Reader) read() (any, error) {
	line, err := r.line()
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, &ProtocolError{"empty reply line"}
	}
	switch line[0] {
	case '+':
		switch string(line[1:]) { // compared without allocating
		case "OK":
			return "OK", nil
		case "QUEUED":
			return "QUEUED", nil
		case "PONG":
			return "PONG", nil
		}
		return string(line[1:]), nil
	case '-':
		return redis.Error(line[1:]), nil
	case ':':
		n, err := parseInt(line[1:])
		if err != nil {
			return nil, err
		}
		return n, nil
	case '$':
		n, err := parseLen(line[1:])
		if n < 0 || err != nil {
			return nil, err
		}
		p := make([]byte, n+2)
		if _, err := io.ReadFull(r.br, p); err != nil {
			return nil, err
		}
		if p[n] != '\r' || p[n+1] != '\n' {
			return nil, &ProtocolError{"bulk string not followed by CRLF"}
		}
		return p[:n:n], nil
	case '*':
		n, err := parseLen(line[1:])
		if n < 0 || err != nil {
			return nil, err
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = r.read(); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return nil, &ProtocolError{fmt.Sprintf("unexpected reply type %q", line[0])}
}

// line returns the next line without its CRLF. It is the reader's buffer:
// valid until the next read.
func (r *Reader) line() ([]byte, error) {
	p, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull { // longer than the buffer: a long error message
		long := append([]byte(nil), p...)
		for err == bufio.ErrBufferFull {
			p, err = r.br.ReadSlice('\n')
			long = append(long, p...)
		}
		p = long
	}
	if err != nil {
		return nil, err
	}
	if len(p) < 2 || p[len(p)-2] != '\r' {
		return nil, &ProtocolError{"reply line not ended by CRLF"}
	}
	return p[:len(p)-2], nil
}

// parseLen parses a bulk string's or an array's length; -1 is the nil reply.
func parseLen(p []byte) (int, error) {
	n, err := parseInt(p)
	if err != nil || n < -1 || len(p) > 10 { // 10 digits: a corrupt length allocates no more than that
		return 0, &ProtocolError{fmt.Sprintf("bad length %q", p)}
	}
	return int(n), nil
}

// parseInt parses an integer reply.
func parseInt(p []byte) (int64, error) {
	neg := len(p) > 0 && p[0] == '-'
	digits := p
	if neg {
		digits = p[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, &ProtocolError{fmt.Sprintf("bad integer %q", p)}
	}
	var n int64
	for _, b := range digits {
		if b < '0' || b > '9' {
			return 0, &ProtocolError{fmt.Sprintf("bad integer %q", p)}
		}
		n = n*10 + int64(b-'0')
	}
	if n < 0 && !(neg && n == -n) { // overflowed, but for -9223372036854775808
		return 0, &ProtocolError{fmt.Sprintf("integer out of range %q", p)}
	}
	if neg {
		n = -n
	}
	return n, nil
}
