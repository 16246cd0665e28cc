package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Hangup, returned by a Fake's handler (alone or at the end of a reply),
// closes the connection right after whatever precedes it was written: a
// fault injected at an exact command.
const Hangup = "\x00redistest-hangup\x00"

// DefaultInfo is what a Fake answers to INFO: enough of a Redis 7.0
// standalone server for a client's handshake.
const DefaultInfo = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n" +
	"# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n" +
	"# Cluster\r\ncluster_enabled:0\r\n"

// Fake is a fake Redis socket for tests that assert the exact bytes a client
// sends or inject faults at a precise point. It reads RESP commands (arrays
// of bulk strings), records their raw bytes, and writes the handler's answer
// verbatim. Each connection's next command is read only once the previous
// one was answered; after a hangup or CloseConns nothing more is read from
// it, so Received and Commands stop at the fault. A command cut short by the
// connection's end shows in Received (its bytes so far) but not in Commands.
//
// A Fake is safe for concurrent use. Its handler is called for one command at
// a time, whatever the number of connections, so it needs no locking of its
// own for state only it touches; a handler that blocks blocks every
// connection (return "" to stall just one reply).
type Fake struct {
	// Addr is "127.0.0.1:<port>".
	Addr string

	ln      net.Listener
	handler func(cmd []string) string
	wg      sync.WaitGroup // the accept loop and one goroutine per connection
	hmu     sync.Mutex     // serializes handler calls

	mu       sync.Mutex // guards the fields below
	conns    map[net.Conn]struct{}
	received []byte   // every command's raw bytes, in the order parsed
	perConn  [][]byte // the same per connection, in accept order
	cmds     [][]string
	closed   bool
}

// StartFake listens on a free loopback port. For each command it calls
// handler and writes the returned string as the raw reply: "" sends nothing
// (a stall, or CLIENT REPLY OFF), a string ending in Hangup closes the
// connection after the rest is written. A nil handler answers like a Redis
// 7.0 server for INFO and PING and +OK to anything else (DefaultReply).
// The caller must call Close.
func StartFake(handler func(cmd []string) string) (*Fake, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redistest: fake listen: %w", err)
	}
	if handler == nil {
		handler = DefaultReply
	}
	f := &Fake{Addr: ln.Addr().String(), ln: ln, handler: handler, conns: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// NewFake starts a Fake like StartFake and closes it when the test ends.
func NewFake(t testing.TB, handler func(cmd []string) string) *Fake {
	t.Helper()
	f, err := StartFake(handler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// DefaultReply answers INFO with DefaultInfo, PING with PONG (or its
// argument) and anything else with +OK. Handlers may fall back on it.
func DefaultReply(cmd []string) string {
	if len(cmd) == 0 {
		return "+OK\r\n"
	}
	switch strings.ToUpper(cmd[0]) {
	case "INFO":
		return Bulk(DefaultInfo)
	case "PING":
		if len(cmd) > 1 {
			return Bulk(cmd[1])
		}
		return "+PONG\r\n"
	}
	return "+OK\r\n"
}

// Bulk returns s as a RESP bulk string reply.
func Bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// Received returns the raw bytes of every command received so far, on all
// connections, in the order they were parsed.
func (f *Fake) Received() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.received...)
}

// ReceivedByConn returns the raw bytes received on each connection, in the
// order the connections were accepted.
func (f *Fake) ReceivedByConn() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]byte, len(f.perConn))
	for i, b := range f.perConn {
		out[i] = append([]byte(nil), b...)
	}
	return out
}

// Commands returns every command received so far, in the order parsed.
func (f *Fake) Commands() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]string, len(f.cmds))
	copy(out, f.cmds)
	return out
}

// CloseConns drops every open connection now, as a network fault would;
// the Fake keeps accepting new ones.
func (f *Fake) CloseConns() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

// Close stops listening, closes every connection and waits for the Fake's
// goroutines to end. It is safe to call more than once.
func (f *Fake) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.ln.Close()
	f.CloseConns()
	f.wg.Wait()
}

func (f *Fake) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // the listener was closed
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.perConn = append(f.perConn, nil)
		id := len(f.perConn) - 1
		f.wg.Add(1) // the accept loop still counts, so Wait has not returned
		f.mu.Unlock()
		go f.serve(c, id)
	}
}

// serve reads commands from c until it fails or a reply hangs up.
func (f *Fake) serve(c net.Conn, id int) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		cmd, raw, err := readCommand(r)
		if len(raw) > 0 {
			f.record(id, cmd, raw, err == nil)
		}
		if err != nil {
			return
		}
		f.hmu.Lock()
		reply := f.handler(cmd)
		f.hmu.Unlock()
		reply, hangup := strings.CutSuffix(reply, Hangup)
		if reply != "" {
			if _, err := io.WriteString(c, reply); err != nil {
				return
			}
		}
		if hangup {
			return
		}
	}
}

func (f *Fake) record(id int, cmd []string, raw []byte, complete bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.received = append(f.received, raw...)
	f.perConn[id] = append(f.perConn[id], raw...)
	if complete {
		f.cmds = append(f.cmds, cmd)
	}
}

var errNotRESP = errors.New("redistest: fake: not a RESP array of bulk strings")

// maxFakeBulk bounds a bulk string the Fake accepts, as Redis's
// proto-max-bulk-len does.
const maxFakeBulk = 512 << 20

// readCommand reads one RESP array of bulk strings. raw holds the bytes read
// for it, also when it fails part way.
func readCommand(r *bufio.Reader) (cmd []string, raw []byte, err error) {
	header := func(kind byte) (int, error) {
		s, err := r.ReadSlice('\n')
		raw = append(raw, s...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return 0, errNotRESP
		case err != nil:
			return 0, err
		case len(s) < 4 || s[0] != kind || s[len(s)-2] != '\r':
			return 0, errNotRESP
		}
		n, err := strconv.Atoi(string(s[1 : len(s)-2]))
		if err != nil {
			return 0, errNotRESP
		}
		return n, nil
	}
	n, err := header('*')
	if err != nil {
		return nil, raw, err
	}
	if n < 1 {
		return nil, raw, errNotRESP
	}
	cmd = make([]string, 0, n)
	for range n {
		size, err := header('$')
		if err != nil {
			return nil, raw, err
		}
		if size < 0 || size > maxFakeBulk {
			return nil, raw, errNotRESP
		}
		buf := make([]byte, size+2)
		k, err := io.ReadFull(r, buf)
		raw = append(raw, buf[:k]...)
		if err != nil {
			return nil, raw, err
		}
		if buf[size] != '\r' || buf[size+1] != '\n' {
			return nil, raw, errNotRESP
		}
		cmd = append(cmd, string(buf[:size]))
	}
	return cmd, raw, nil
}
