package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type (
	// Dir is a direction of traffic through a Proxy.
	Dir int
	// Scope says which connections SetFault reaches.
	Scope int
	// FaultKind says what a Proxy does to a connection (see the constants).
	FaultKind int
)

const (
	ToServer Dir = 1 << iota // client → server
	ToClient                 // server → client
	BothDirs = ToServer | ToClient
)

const (
	AllConns      Scope = iota // the open connections and those accepted later
	NewConns                   // only those accepted later
	ExistingConns              // only the open ones (later ones get no fault)
)

// The faults:
//
//   - Delay holds each chunk going in Dir for Fault.Delay before forwarding it.
//   - Stall stops forwarding Dir once AfterBytes more bytes passed. What comes
//     after is still read (so a peer's close is seen) and held until the fault
//     is cleared or replaced, then forwarded; if the connection closes first,
//     it is lost.
//   - Cut forwards AfterBytes more bytes in Dir, then closes both sides when
//     more come. The server side is half-closed: the server gets everything
//     forwarded before it sees the end (and no reply to it reaches the
//     client); its replies are drained.
//   - Reset is Cut with both sockets closed with SO_LINGER 0 (an RST).
//   - Drop discards what comes in Dir after AfterBytes more bytes; the
//     connection stays open.
//   - CutAtCommand cuts the connection right before (or, with AfterForward,
//     right after) forwarding the Nth client command that matches Command.
const (
	NoFault FaultKind = iota
	Delay
	Stall
	Cut
	Reset
	Drop
	CutAtCommand
)

// Fault is one fault of a Proxy. Byte counts start when it reaches a connection.
type Fault struct {
	Kind       FaultKind
	Dir        Dir           // Delay, Stall, Cut, Reset, Drop
	AfterBytes int64         // Stall, Cut, Reset, Drop: bytes let through first
	Delay      time.Duration // Delay
	// Command is what CutAtCommand looks for: a command name ("EXEC") or its
	// first words ("CLIENT REPLY ON"), matched case-insensitively.
	Command      string
	Nth          int  // CutAtCommand: cut at the Nth match on a connection (0 or 1: the first)
	AfterForward bool // CutAtCommand: forward the command, then cut
	Scope        Scope
	Once         bool // fire on one connection only; inert on the others after that
}

// faultState is one SetFault's fault, shared by the connections it reached.
type faultState struct {
	f     Fault
	words []string
	fired int // guarded by Proxy.mu
}

// Proxy is a loopback TCP proxy in front of one server that injects faults
// into its connections on command. It is safe for concurrent use.
type Proxy struct {
	Addr string // "127.0.0.1:<port>"

	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex // guards the fields below, faultState.fired and pconn.running
	conns    map[*pconn]struct{}
	newFault *faultState
	fired    int
	closed   bool
	refusing bool // Refuse stopped listening; Listen starts again
}

// StartProxy listens on a free loopback port and forwards each connection
// to target. The caller must call Close.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redistest: proxy listen: %w", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[*pconn]struct{}{}}
	p.wg.Add(1)
	go p.accept(ln)
	return p, nil
}

// Refuse cuts every connection and stops listening: connecting to Addr
// fails until Listen.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	ln := p.ln
	p.refusing = true
	p.mu.Unlock()
	ln.Close()
	p.CutAll()
}

// Listen accepts connections on Addr again after Refuse.
func (p *Proxy) Listen() error {
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		return fmt.Errorf("redistest: proxy listen again: %w", err)
	}
	p.mu.Lock()
	p.ln, p.refusing = ln, false
	p.mu.Unlock()
	p.wg.Add(1)
	go p.accept(ln)
	return nil
}

// NewProxy starts a Proxy like StartProxy and closes it when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := StartProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// SetFault replaces the fault of the connections f.Scope names; bytes a
// stall held on them are forwarded first.
func (p *Proxy) SetFault(f Fault) {
	var st *faultState
	if f.Kind != NoFault {
		st = &faultState{f: f, words: strings.Fields(f.Command)}
	}
	p.mu.Lock()
	if p.newFault = st; f.Scope == ExistingConns {
		p.newFault = nil
	}
	p.mu.Unlock()
	for _, c := range p.list() {
		if f.Scope != NewConns {
			c.apply(st)
		}
	}
}

// Clear removes every fault and releases what stalls held.
func (p *Proxy) Clear() { p.SetFault(Fault{}) }

// CutAll cuts every open connection (like Cut; held bytes are lost).
func (p *Proxy) CutAll() {
	for _, c := range p.list() {
		c.teardown(false, nil)
	}
}

// Conns returns the number of connections not fully closed yet (a cut one
// counts until the server closed its side).
func (p *Proxy) Conns() int { return p.locked(func() int { return len(p.conns) }) }

// Fired returns how often a fault fired (a cut, reset, stall or drop began).
func (p *Proxy) Fired() int { return p.locked(func() int { return p.fired }) }

// Close stops listening, resets every connection and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ln, refusing := p.ln, p.refusing
	p.mu.Unlock()
	var err error
	if !refusing {
		err = ln.Close()
	}
	for _, c := range p.list() {
		c.teardown(true, nil)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) locked(f func() int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f()
}

func (p *Proxy) list() (out []*pconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		out = append(out, c)
	}
	return out
}

// tryFire reports whether st may fire now, and counts it.
func (p *Proxy) tryFire(st *faultState) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.f.Once && st.fired > 0 {
		return false
	}
	st.fired++
	p.fired++
	return true
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		sc, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			nc.Close()
			continue
		}
		c := &pconn{p: p, side: [2]*net.TCPConn{sc.(*net.TCPConn), nc.(*net.TCPConn)}}
		p.mu.Lock()
		if p.closed || (p.refusing && p.ln == ln) {
			// Closed, or refused while this one was being accepted: it
			// must not outlive the cut.
			c.side[0].Close()
			c.side[1].Close()
		} else {
			p.conns[c], c.running = struct{}{}, 2
			c.setFault(p.newFault)
			p.wg.Add(2)
			go c.pump(toServer)
			go c.pump(toClient)
		}
		p.mu.Unlock()
	}
}

// Directions as indices (side[d] is where direction d writes to), what a
// chunk leads to, and the bound on a forwarding write and on the drain.
const (
	toServer, toClient  = 0, 1
	forward, cut, reset = 0, 1, 2
	proxyIOTimeout      = 10 * time.Second
)

// pconn is one proxied connection: side[0] the server, side[1] the client.
type pconn struct {
	p       *Proxy
	side    [2]*net.TCPConn
	wmu     [2]sync.Mutex // serializes writes per direction (its pump, a release)
	running int           // pumps running, guarded by p.mu

	mu      sync.Mutex // guards the fields below
	st      *faultState
	left    [2]int64 // bytes before the fault fires, per direction
	nth     int      // commands matched so far
	stalled [2]bool
	dropped [2]bool
	held    [2][]byte
	pending []byte // client bytes of a command not complete yet
	raw     bool   // the client does not speak RESP: no command framing
	closed  bool
}

// setFault installs st, with c.mu held (or before the pumps start).
func (c *pconn) setFault(st *faultState) {
	c.st, c.nth, c.stalled, c.dropped = st, 0, [2]bool{}, [2]bool{}
	if st != nil {
		c.left = [2]int64{st.f.AfterBytes, st.f.AfterBytes}
	}
}

// apply replaces c's fault, forwarding what a stall held.
func (c *pconn) apply(st *faultState) {
	for d := range c.wmu {
		c.wmu[d].Lock()
		defer c.wmu[d].Unlock()
	}
	c.mu.Lock()
	held, closed := c.held, c.closed
	c.held = [2][]byte{}
	c.setFault(st)
	c.mu.Unlock()
	for d, b := range held {
		if len(b) > 0 && !closed && c.write(d, b) != nil {
			c.teardown(false, nil)
		}
	}
}

func (c *pconn) write(d int, b []byte) error {
	c.side[d].SetWriteDeadline(time.Now().Add(proxyIOTimeout))
	_, err := c.side[d].Write(b)
	return err
}

// teardown closes the client's socket, then writes last to the server and
// closes the server's socket: with rst, both with an RST; otherwise the
// server's write side only (its pump drains the replies until it closes).
func (c *pconn) teardown(rst bool, last []byte) {
	c.mu.Lock()
	already := c.closed
	c.closed, c.held, c.pending = true, [2][]byte{}, nil
	c.mu.Unlock()
	if already {
		return
	}
	for d := toClient; d >= toServer; d-- {
		if rst {
			c.side[d].SetLinger(0)
		}
		if d == toServer && len(last) > 0 {
			c.write(toServer, last)
		}
		if d == toClient || rst {
			c.side[d].Close()
		}
	}
	if !rst {
		c.side[toServer].CloseWrite()
		c.side[toServer].SetReadDeadline(time.Now().Add(proxyIOTimeout))
	}
}

// pump forwards direction d until its source ends.
func (c *pconn) pump(d int) {
	defer c.p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.side[1-d].Read(buf)
		if n > 0 && !c.handle(d, buf[:n]) || err != nil {
			break
		}
	}
	c.teardown(false, nil)
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	if c.running--; c.running == 0 {
		delete(c.p.conns, c)
		c.side[0].Close()
		c.side[1].Close()
	}
}

// handle passes chunk b of direction d through c's fault. It returns false
// when the pump should stop reading (the server's goes on, draining).
func (c *pconn) handle(d int, b []byte) bool {
	c.wmu[d].Lock()
	defer c.wmu[d].Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return d == toClient
	}
	out, act := b, forward
	if d == toServer && !c.raw {
		out, act = c.frame(b)
	}
	var delay time.Duration
	if st := c.st; st != nil && st.f.Dir&(1<<d) != 0 && act == forward && st.f.Kind != CutAtCommand {
		if st.f.Kind == Delay {
			delay = st.f.Delay
		} else {
			out, act = c.byteFault(d, st, out)
		}
	}
	c.mu.Unlock()
	time.Sleep(delay)
	switch {
	case act != forward && d == toServer:
		// The client is gone before the last bytes reach the server: no
		// reply to them can slip through.
		c.teardown(act == reset, out)
		return false
	case len(out) > 0 && c.write(d, out) != nil:
		act = cut
	}
	if act != forward {
		c.teardown(act == reset, nil)
	}
	return act == forward || d == toClient
}

// byteFault applies a Stall, Drop, Cut or Reset to out, with c.mu held.
func (c *pconn) byteFault(d int, st *faultState, out []byte) ([]byte, int) {
	switch {
	case c.stalled[d]:
		c.held[d] = append(c.held[d], out...)
		return nil, forward
	case c.dropped[d]:
		return nil, forward
	case int64(len(out)) <= c.left[d]:
		c.left[d] -= int64(len(out))
		return out, forward
	case !c.p.tryFire(st):
		c.st = nil // a Once fault that fired elsewhere
		return out, forward
	}
	pass, rest := out[:c.left[d]], out[c.left[d]:]
	c.left[d] = 0
	switch st.f.Kind {
	case Stall:
		c.stalled[d], c.held[d] = true, append(c.held[d], rest...)
	case Drop:
		c.dropped[d] = true
	case Cut:
		return pass, cut
	case Reset:
		return pass, reset
	}
	return pass, forward
}

// frame returns the complete commands of pending+b, keeping an incomplete
// one pending, and applies CutAtCommand; c.mu is held.
func (c *pconn) frame(b []byte) ([]byte, int) {
	data, st, off := append(c.pending, b...), c.st, 0
	for off < len(data) {
		n, words, bad := parseCommand(data[off:])
		if bad { // not RESP: forward as it comes from now on
			c.raw, c.pending = true, nil
			return data, forward
		}
		if n == 0 {
			break
		}
		if st != nil && st.f.Kind == CutAtCommand && len(st.words) > 0 && len(words) >= len(st.words) &&
			strings.EqualFold(strings.Join(words[:len(st.words)], " "), strings.Join(st.words, " ")) {
			if c.nth++; c.nth >= st.f.Nth && c.p.tryFire(st) {
				if c.pending = nil; st.f.AfterForward {
					off += n
				}
				return data[:off], cut
			}
		}
		off += n
	}
	c.pending = append([]byte(nil), data[off:]...)
	return data[:off], forward
}

// parseCommand reads one command from p (with the Fake's reader): its
// length and words, 0 when p holds only part of it, bad when p does not
// start with one.
func parseCommand(p []byte) (n int, words []string, bad bool) {
	// Header lines fit the smallest buffer; bulk strings bypass it.
	cmd, raw, err := readCommand(bufio.NewReaderSize(bytes.NewReader(p), 16))
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return 0, nil, false
	case err != nil:
		return 0, nil, true
	}
	return len(raw), cmd, false
}
