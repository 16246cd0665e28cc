package redistest

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// respCmd encodes one command as RESP.
func respCmd(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// proxyRaw opens a plain TCP connection to addr, closed when the test ends.
func proxyRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rawSend(t *testing.T, c net.Conn, frames ...[]byte) {
	t.Helper()
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// rawExpect reads exactly len(want) bytes within 5 s and compares them.
func rawExpect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// rawNothing checks that nothing arrives on c for d.
func rawNothing(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := c.Read(b[:])
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected silence, got %q, %v", b[:n], err)
	}
}

// rawClosed checks that c ends (EOF or reset) within 5 s, and returns the error.
func rawClosed(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open (read %q)", b)
	}
	if err == nil {
		err = io.EOF
	}
	return err
}

func proxyWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// proxyGet reads key directly from s ("" when missing).
func proxyGet(t *testing.T, s *Server, key string) string {
	t.Helper()
	v, err := redis.String(s.Call("GET", key))
	if err != nil && !errors.Is(err, redis.ErrNil) {
		t.Fatal(err)
	}
	return v
}

func newProxyPair(t *testing.T) (*Server, *Proxy) {
	t.Parallel()
	s := Standalone(t)
	return s, NewProxy(t, s.Addr)
}

func TestProxyForwards(t *testing.T) {
	s, p := newProxyPair(t)
	c, err := redis.Dial("tcp", p.Addr, redis.DialReadTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 300<<10) // spans many reads: framing must keep it whole
	if _, err := c.Do("SET", "big", big); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		c.Send("INCR", "n")
	}
	c.Send("GET", "big")
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 1000; i++ {
		if n, err := redis.Int(c.Receive()); err != nil || n != i {
			t.Fatalf("INCR %d: %d, %v", i, n, err)
		}
	}
	if v, err := redis.String(c.Receive()); err != nil || v != big {
		t.Fatalf("GET big: %d bytes, %v", len(v), err)
	}
	if p.Conns() != 1 {
		t.Errorf("Conns = %d, want 1", p.Conns())
	}
	c.Close()
	proxyWait(t, "the connection is gone", func() bool { return p.Conns() == 0 })
	if got := proxyGet(t, s, "n"); got != "1000" {
		t.Errorf("n = %s", got)
	}
}

// Refuse cuts the open connections and refuses new ones; Listen takes
// them on the same address again.
func TestProxyRefuseAndListen(t *testing.T) {
	_, p := newProxyPair(t)
	c, err := redis.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Refuse()
	proxyWait(t, "the open connection is cut", func() bool { return p.Conns() == 0 })
	if _, err := c.Do("PING"); err == nil {
		t.Error("an open connection answered after Refuse")
	}
	if nc, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		nc.Close()
		t.Fatal("a new connection was accepted after Refuse")
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	c2, err := redis.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if pong, err := redis.String(c2.Do("PING")); err != nil || pong != "PONG" {
		t.Fatalf("PING after Listen: %q, %v", pong, err)
	}
}

func TestProxyDelay(t *testing.T) {
	_, p := newProxyPair(t)
	c := proxyRaw(t, p.Addr)
	p.SetFault(Fault{Kind: Delay, Dir: BothDirs, Delay: 60 * time.Millisecond})
	start := time.Now()
	rawSend(t, c, respCmd("PING"))
	rawExpect(t, c, "+PONG\r\n")
	if d := time.Since(start); d < 120*time.Millisecond {
		t.Errorf("round trip took %v with 60ms each way", d)
	}
}

func TestProxyStall(t *testing.T) {
	s, p := newProxyPair(t)
	c := proxyRaw(t, p.Addr)

	p.SetFault(Fault{Kind: Stall, Dir: ToServer})
	rawSend(t, c, respCmd("INCR", "a"))
	rawNothing(t, c, 100*time.Millisecond)
	if got := proxyGet(t, s, "a"); got != "" {
		t.Fatalf("a = %q while the request is stalled", got)
	}
	p.Clear()
	rawExpect(t, c, ":1\r\n")

	p.SetFault(Fault{Kind: Stall, Dir: ToClient, AfterBytes: 2})
	rawSend(t, c, respCmd("INCR", "a"))
	rawExpect(t, c, ":2") // AfterBytes let through
	proxyWait(t, "the server applied the INCR", func() bool { return proxyGet(t, s, "a") == "2" })
	rawNothing(t, c, 100*time.Millisecond)
	p.Clear()
	rawExpect(t, c, "\r\n")

	// A client that hangs up while its request is stalled: the held bytes
	// are lost, never applied later.
	c2 := proxyRaw(t, p.Addr)
	rawSend(t, c2, respCmd("PING"))
	rawExpect(t, c2, "+PONG\r\n")
	p.SetFault(Fault{Kind: Stall, Dir: ToServer})
	rawSend(t, c2, respCmd("INCR", "a"))
	time.Sleep(20 * time.Millisecond)
	c2.Close()
	proxyWait(t, "the stalled connection is gone", func() bool { return p.Conns() == 1 })
	p.Clear()
	rawSend(t, c, respCmd("GET", "a"))
	rawExpect(t, c, "$1\r\n2\r\n")
	if p.Fired() != 3 {
		t.Errorf("Fired = %d, want 3", p.Fired())
	}
}

func TestProxyCut(t *testing.T) {
	s, p := newProxyPair(t)
	// Client → server: the first command passes, the second never arrives.
	c := proxyRaw(t, p.Addr)
	first := respCmd("SET", "k1", "v")
	p.SetFault(Fault{Kind: Cut, Dir: ToServer, AfterBytes: int64(len(first))})
	rawSend(t, c, first, respCmd("SET", "k2", "v"))
	rawClosed(t, c)
	proxyWait(t, "the cut connection is gone", func() bool { return p.Conns() == 0 })
	if proxyGet(t, s, "k1") != "v" || proxyGet(t, s, "k2") != "" {
		t.Errorf("k1 = %q, k2 = %q", proxyGet(t, s, "k1"), proxyGet(t, s, "k2"))
	}

	// Server → client: the first reply passes, then the connection ends.
	c = proxyRaw(t, p.Addr)
	p.SetFault(Fault{Kind: Cut, Dir: ToClient, AfterBytes: 4})
	rawSend(t, c, respCmd("INCR", "n"), respCmd("INCR", "n"))
	rawExpect(t, c, ":1\r\n")
	rawClosed(t, c)
	proxyWait(t, "the cut connection is gone", func() bool { return p.Conns() == 0 })
	if got := proxyGet(t, s, "n"); got != "2" {
		t.Errorf("n = %q, want 2: the server ran both", got)
	}

	// Exactly AfterBytes passing does not cut: the next byte does.
	c = proxyRaw(t, p.Addr)
	p.SetFault(Fault{Kind: Cut, Dir: ToClient, AfterBytes: 7})
	rawSend(t, c, respCmd("PING"))
	rawExpect(t, c, "+PONG\r\n")
	rawNothing(t, c, 50*time.Millisecond)
	rawSend(t, c, respCmd("PING"))
	rawClosed(t, c)
}

func TestProxyReset(t *testing.T) {
	s, p := newProxyPair(t)
	c := proxyRaw(t, p.Addr)
	p.SetFault(Fault{Kind: Reset, Dir: ToClient})
	rawSend(t, c, respCmd("INCR", "n"))
	if err := rawClosed(t, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client got %v, want a reset", err)
	}
	proxyWait(t, "the reset connection is gone", func() bool { return p.Conns() == 0 })
	proxyWait(t, "the server dropped its client", func() bool {
		return ParseInfo(mustString(t, s, "INFO", "clients"))["connected_clients"] == "1"
	})
}

func mustString(t *testing.T, s *Server, cmd string, args ...any) string {
	t.Helper()
	v, err := redis.String(s.Call(cmd, args...))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestProxyDrop(t *testing.T) {
	s, p := newProxyPair(t)
	c := proxyRaw(t, p.Addr)
	p.SetFault(Fault{Kind: Drop, Dir: ToClient})
	rawSend(t, c, respCmd("INCR", "n"))
	rawNothing(t, c, 100*time.Millisecond)
	if got := proxyGet(t, s, "n"); got != "1" {
		t.Errorf("n = %q: the server ran the INCR", got)
	}
	if p.Conns() != 1 {
		t.Errorf("Conns = %d: the connection stays open", p.Conns())
	}
	p.Clear()
	rawSend(t, c, respCmd("PING"))
	rawExpect(t, c, "+PONG\r\n")
}

func TestProxyCutAtCommand(t *testing.T) {
	s, p := newProxyPair(t)
	tx := [][]byte{respCmd("MULTI"), respCmd("INCR", "tx"), respCmd("EXEC")}
	for _, after := range []bool{false, true} {
		c := proxyRaw(t, p.Addr)
		p.SetFault(Fault{Kind: CutAtCommand, Command: "exec", AfterForward: after})
		rawSend(t, c, tx...)
		rawClosed(t, c)
		proxyWait(t, "the cut connection is gone", func() bool { return p.Conns() == 0 })
	}
	if got := proxyGet(t, s, "tx"); got != "1" {
		t.Errorf("tx = %q: EXEC cut before forwarding discards, after forwarding applies", got)
	}

	// Between CLIENT REPLY OFF and ON: the commands in between ran.
	c := proxyRaw(t, p.Addr)
	p.SetFault(Fault{Kind: CutAtCommand, Command: "client reply on"})
	rawSend(t, c, respCmd("CLIENT", "REPLY", "OFF"), respCmd("INCR", "r"), respCmd("CLIENT", "REPLY", "ON"))
	rawClosed(t, c)
	proxyWait(t, "the cut connection is gone", func() bool { return p.Conns() == 0 })
	if got := proxyGet(t, s, "r"); got != "1" {
		t.Errorf("r = %q", got)
	}

	// The Nth match, with commands split across writes.
	c = proxyRaw(t, p.Addr)
	p.SetFault(Fault{Kind: CutAtCommand, Command: "INCR", Nth: 3})
	var all []byte
	for i := 0; i < 5; i++ {
		all = append(all, respCmd("INCR", "nth")...)
	}
	for len(all) > 0 { // split across writes; those after the cut may fail
		n := min(len(all), 7)
		c.Write(all[:n])
		all = all[n:]
	}
	rawClosed(t, c) // the replies to the first two are drained by the proxy
	proxyWait(t, "the cut connection is gone", func() bool { return p.Conns() == 0 })
	if got := proxyGet(t, s, "nth"); got != "2" {
		t.Errorf("nth = %q, want 2", got)
	}
	if p.Fired() != 4 {
		t.Errorf("Fired = %d, want 4", p.Fired())
	}
}

func TestProxyOnceAndScope(t *testing.T) {
	_, p := newProxyPair(t)
	a, b := proxyRaw(t, p.Addr), proxyRaw(t, p.Addr)
	proxyWait(t, "both connections are up", func() bool { return p.Conns() == 2 })
	p.SetFault(Fault{Kind: Cut, Dir: ToServer, Once: true})
	rawSend(t, a, respCmd("PING"))
	rawClosed(t, a)
	rawSend(t, b, respCmd("PING"))
	rawExpect(t, b, "+PONG\r\n")

	// NewConns leaves b alone; a new connection is cut.
	p.SetFault(Fault{Kind: Cut, Dir: ToServer, Scope: NewConns})
	rawSend(t, b, respCmd("PING"))
	rawExpect(t, b, "+PONG\r\n")
	c := proxyRaw(t, p.Addr)
	rawSend(t, c, respCmd("PING"))
	rawClosed(t, c)

	// ExistingConns cuts b, not a later connection.
	p.SetFault(Fault{Kind: Cut, Dir: ToServer, Scope: ExistingConns})
	d := proxyRaw(t, p.Addr)
	rawSend(t, d, respCmd("PING"))
	rawExpect(t, d, "+PONG\r\n")
	rawSend(t, b, respCmd("PING"))
	rawClosed(t, b)
	if p.Fired() != 3 {
		t.Errorf("Fired = %d, want 3", p.Fired())
	}
}

func TestProxyCutAllAndClose(t *testing.T) {
	_, p := newProxyPair(t)
	a, b := proxyRaw(t, p.Addr), proxyRaw(t, p.Addr)
	proxyWait(t, "both connections are up", func() bool { return p.Conns() == 2 })
	p.CutAll()
	rawClosed(t, a)
	rawClosed(t, b)
	proxyWait(t, "no connection is left", func() bool { return p.Conns() == 0 })

	c := proxyRaw(t, p.Addr)
	rawSend(t, c, respCmd("PING"))
	rawExpect(t, c, "+PONG\r\n")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	rawClosed(t, c)
	if _, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		t.Error("the proxy still accepts connections after Close")
	}
}

func TestProxyParseCommand(t *testing.T) {
	full := respCmd("CLIENT", "REPLY", "ON")
	for _, tc := range []struct {
		in    string
		n     int
		words string
		bad   bool
	}{
		{string(full), len(full), "CLIENT REPLY ON", false},
		{string(full) + "*1\r\n", len(full), "CLIENT REPLY ON", false},
		{string(full[:len(full)-1]), 0, "", false},
		{"*2\r\n$3\r\nGET", 0, "", false},
		{"*2\r\n$3\r\nGET\r\n$1", 0, "", false},
		{"*2\r\n$3\r\nGET\r\n$1\r\nk", 0, "", false},
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r", 0, "", false},
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 20, "GET k", false},
		{"*2\r\n$3\r\nGET\r\n:1\r\nk\r\n", 0, "", true},
		{"*", 0, "", false},
		{"PING\r\n", 0, "", true}, // inline commands are not framed
		{"*0\r\n", 0, "", true},
		{"*x\r\n", 0, "", true},
		{"*1\r\n+OK\r\n", 0, "", true},
	} {
		n, words, bad := parseCommand([]byte(tc.in))
		if n != tc.n || strings.Join(words, " ") != tc.words || bad != tc.bad {
			t.Errorf("parseCommand(%q) = %d, %q, %v", tc.in, n, words, bad)
		}
	}
}
