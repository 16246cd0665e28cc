package redistest

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

func TestTwemproxyForwardsAndCloses(t *testing.T) {
	t.Parallel()
	srv := Standalone(t)
	p := NewTwemproxy(t, srv)
	if !strings.HasPrefix(p.Addr, "127.0.0.1:") || p.PID() <= 0 || p.Backend != srv {
		t.Fatalf("Addr = %q, PID = %d", p.Addr, p.PID())
	}
	c, err := p.Dial(redis.DialReadTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got, err := redis.String(srv.Call("GET", "k")); err != nil || got != "v" {
		t.Fatalf("GET on the server = %q, %v", got, err)
	}

	// Commands the proxy does not take close the connection, no error reply.
	for _, cmd := range [][]any{{"INFO", "server"}, {"CONFIG", "GET", "maxmemory"}, {"CLIENT", "REPLY", "OFF"}, {"MULTI"}, {"WAIT", 0, 10}} {
		c, err := p.Dial(redis.DialReadTimeout(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Do(cmd[0].(string), cmd[1:]...)
		c.Close()
		var rerr redis.Error
		if err == nil || errors.As(err, &rerr) {
			t.Errorf("%v through nutcracker: err = %v, want the connection closed", cmd, err)
		}
	}
}

func TestTwemproxyStop(t *testing.T) {
	t.Parallel()
	p := NewTwemproxy(t, Standalone(t))
	p.Stop()
	p.Stop() // twice is fine
	if _, err := p.Dial(); err == nil {
		t.Fatal("the proxy still accepts after Stop")
	}
}

func TestTwemproxyPortClash(t *testing.T) {
	srv := Standalone(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if calls == 1 && err == nil {
			ports[0] = taken
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()

	p := NewTwemproxy(t, srv)
	if calls != 2 || p.Port == taken {
		t.Fatalf("calls = %d, port = %d (taken %d)", calls, p.Port, taken)
	}
}

func TestTwemproxyNotFound(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	sbinNutcracker = "/nonexistent/nutcracker"
	defer func() { sbinNutcracker = "/usr/sbin/nutcracker" }()
	_, err := nutcrackerBinary()
	if !errors.Is(err, ErrNutcrackerNotFound) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y nutcracker") {
		t.Fatalf("message lacks the install hint: %v", err)
	}
}
