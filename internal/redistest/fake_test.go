package redistest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

func dialFake(t *testing.T, f *Fake) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", f.Addr, redis.DialReadTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rawDial(t *testing.T, f *Fake) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func TestFakeDefaultReplies(t *testing.T) {
	f := NewFake(t, nil)
	if !strings.HasPrefix(f.Addr, "127.0.0.1:") {
		t.Fatalf("Addr = %q", f.Addr)
	}
	c := dialFake(t, f)
	if got, err := redis.String(c.Do("PING")); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if got, err := redis.String(c.Do("PING", "hi")); err != nil || got != "hi" {
		t.Fatalf("PING hi = %q, %v", got, err)
	}
	info, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		t.Fatal(err)
	}
	fields := ParseInfo(info)
	if fields["redis_version"] != "7.0.15" || fields["cluster_enabled"] != "0" {
		t.Fatalf("INFO = %q", info)
	}
	if got, err := redis.String(c.Do("SET", "k", "v")); err != nil || got != "OK" {
		t.Fatalf("SET = %q, %v", got, err)
	}

	want := "*1\r\n$4\r\nPING\r\n" + "*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n" + "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n" +
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
	if got := string(f.Received()); got != want {
		t.Errorf("Received = %q, want %q", got, want)
	}
	if got := fmt.Sprint(f.Commands()); got != "[[PING] [PING hi] [INFO server] [SET k v]]" {
		t.Errorf("Commands = %s", got)
	}
	if by := f.ReceivedByConn(); len(by) != 1 || string(by[0]) != want {
		t.Errorf("ReceivedByConn = %q", by)
	}
}

func TestFakeHandlerRepliesVerbatim(t *testing.T) {
	f := NewFake(t, func(cmd []string) string {
		switch cmd[0] {
		case "NUM":
			return ":42\r\n"
		case "SILENT":
			return ""
		case "TWO":
			return "+a\r\n+b\r\n" // two replies for one command
		}
		return "-ERR unknown\r\n"
	})
	c := rawDial(t, f)
	io.WriteString(c, "*1\r\n$6\r\nSILENT\r\n*1\r\n$3\r\nNUM\r\n*1\r\n$3\r\nTWO\r\n*1\r\n$1\r\nX\r\n")
	want := ":42\r\n+a\r\n+b\r\n-ERR unknown\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("replies = %q, want %q", got, want)
	}
	// Nothing more: SILENT got no reply.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("extra reply: %d bytes, %v", n, err)
	}
	if got := fmt.Sprint(f.Commands()); got != "[[SILENT] [NUM] [TWO] [X]]" {
		t.Errorf("Commands = %s", got)
	}
}

func TestFakeBinaryArguments(t *testing.T) {
	f := NewFake(t, nil)
	c := dialFake(t, f)
	arg := "a\r\n*1\r\n$3\r\nnot a command\x00\xff"
	if _, err := c.Do("SET", "k", arg); err != nil {
		t.Fatal(err)
	}
	cmds := f.Commands()
	if len(cmds) != 1 || len(cmds[0]) != 3 || cmds[0][2] != arg {
		t.Fatalf("Commands = %q", cmds)
	}
}

func TestFakeHangup(t *testing.T) {
	n := 0
	f := NewFake(t, func(cmd []string) string {
		if cmd[0] == "ECHO" {
			return Bulk(cmd[1])
		}
		n++
		switch n {
		case 1:
			return "+first\r\n"
		case 2:
			return "+second\r\n" + Hangup
		}
		t.Errorf("command %d %q after the hangup", n, cmd)
		return "+late\r\n"
	})
	c := dialFake(t, f)
	for range 3 {
		c.Send("PING")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second"} {
		if got, err := redis.String(c.Receive()); err != nil || got != want {
			t.Fatalf("Receive = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := c.Receive(); err == nil {
		t.Fatal("third Receive succeeded after the hangup")
	}
	// The Fake still accepts connections.
	c2 := dialFake(t, f)
	if got, err := redis.String(c2.Do("ECHO", "again")); err != nil || got != "again" {
		t.Fatalf("ECHO on a new connection = %q, %v", got, err)
	}
	// Nothing is read after a hangup: the third PING is not recorded.
	if got := fmt.Sprint(f.Commands()); got != "[[PING] [PING] [ECHO again]]" {
		t.Errorf("Commands = %s", got)
	}
}

func TestFakeHangupAlone(t *testing.T) {
	f := NewFake(t, func([]string) string { return Hangup })
	c := rawDial(t, f)
	io.WriteString(c, "*1\r\n$4\r\nPING\r\n")
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("read %q, %v; want EOF and nothing", b, err)
	}
}

func TestFakeCloseConns(t *testing.T) {
	f := NewFake(t, nil)
	c1 := dialFake(t, f)
	c2 := dialFake(t, f)
	if _, err := c1.Do("PING"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Do("ECHO", "x"); err != nil {
		t.Fatal(err)
	}
	f.CloseConns()
	if _, err := c1.Do("PING"); err == nil {
		t.Fatal("c1 still works after CloseConns")
	}
	if _, err := c2.Do("PING"); err == nil {
		t.Fatal("c2 still works after CloseConns")
	}
	c3 := dialFake(t, f)
	if _, err := c3.Do("SET", "a", "b"); err != nil {
		t.Fatal(err)
	}
	by := f.ReceivedByConn()
	if len(by) != 3 {
		t.Fatalf("ReceivedByConn has %d connections, want 3", len(by))
	}
	if string(by[0]) != "*1\r\n$4\r\nPING\r\n" || string(by[1]) != "*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n" ||
		string(by[2]) != "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n" {
		t.Fatalf("ReceivedByConn = %q", by)
	}
}

func TestFakeCloseConnsFromHandler(t *testing.T) {
	var f *Fake
	ready := make(chan struct{})
	f = NewFake(t, func(cmd []string) string {
		<-ready
		f.CloseConns()
		return "+never\r\n"
	})
	close(ready)
	c := dialFake(t, f)
	if _, err := c.Do("PING"); err == nil {
		t.Fatal("reply after CloseConns")
	}
}

func TestFakeMalformedInputClosesConn(t *testing.T) {
	for name, input := range map[string]string{
		"inline":       "PING\r\n",
		"not bulk":     "*1\r\n:4\r\n",
		"bad length":   "*1\r\n$x\r\nPING\r\n",
		"empty array":  "*0\r\n",
		"missing CRLF": "*1\r\n$4\r\nPINGxx",
	} {
		t.Run(name, func(t *testing.T) {
			f := NewFake(t, nil)
			c := rawDial(t, f)
			io.WriteString(c, input)
			if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
				t.Fatalf("read %q, %v; want EOF", b, err)
			}
			if got := f.Commands(); len(got) != 0 {
				t.Errorf("Commands = %q", got)
			}
			if got := f.Received(); !bytes.HasPrefix([]byte(input), got) || len(got) == 0 {
				t.Errorf("Received = %q, want a prefix of %q", got, input)
			}
		})
	}
}

func TestFakePartialCommandAtClose(t *testing.T) {
	f := NewFake(t, nil)
	c := rawDial(t, f)
	io.WriteString(c, "*2\r\n$3\r\nGET\r\n$1\r\n")
	c.Close()
	// The Fake records the partial command when it reads EOF.
	for deadline := time.Now().Add(5 * time.Second); len(f.Received()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	f.Close()
	if got := string(f.Received()); got != "*2\r\n$3\r\nGET\r\n$1\r\n" {
		t.Errorf("Received = %q", got)
	}
	if got := f.Commands(); len(got) != 0 {
		t.Errorf("Commands = %q", got)
	}
}

func TestFakeClose(t *testing.T) {
	f, err := StartFake(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := redis.Dial("tcp", f.Addr, redis.DialReadTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { f.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a connection was open")
	}
	f.Close() // again: no-op
	if _, err := c.Do("PING"); err == nil {
		t.Error("connection still served after Close")
	}
	if nc, err := net.DialTimeout("tcp", f.Addr, time.Second); err == nil {
		nc.Close()
		t.Error("Fake still accepts after Close")
	}
}

func TestFakeConcurrentConns(t *testing.T) {
	const conns, perConn = 8, 50
	calls := 0 // handler calls are serialized: no lock needed
	f := NewFake(t, func(cmd []string) string {
		calls++
		return ":" + cmd[1] + "\r\n"
	})
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := redis.Dial("tcp", f.Addr, redis.DialReadTimeout(5*time.Second))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for j := range perConn {
				c.Send("ECHO", i*1000+j)
			}
			c.Flush()
			for j := range perConn {
				if n, err := redis.Int(c.Receive()); err != nil || n != i*1000+j {
					t.Errorf("conn %d reply %d = %d, %v", i, j, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	f.Close()
	if calls != conns*perConn || len(f.Commands()) != conns*perConn {
		t.Fatalf("handler calls %d, commands %d; want %d", calls, len(f.Commands()), conns*perConn)
	}
	var total int
	for _, b := range f.ReceivedByConn() {
		total += len(b)
	}
	if total != len(f.Received()) {
		t.Fatalf("per connection %d bytes, in total %d", total, len(f.Received()))
	}
}
