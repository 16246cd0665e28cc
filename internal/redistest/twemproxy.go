package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ErrNutcrackerNotFound is reported by NewTwemproxy when no nutcracker
// (twemproxy) binary is on PATH.
var ErrNutcrackerNotFound = errors.New("redistest: nutcracker (twemproxy) not found in PATH; " +
	"install it with `apt-get install -y nutcracker` (make test does this)")

// Twemproxy is one nutcracker process (twemproxy, Debian's package
// nutcracker) listening on 127.0.0.1 in front of one redis-server: a real
// proxy, for tests of what rbatch does through one.
//
// What Debian's nutcracker 0.5.0 does, checked with redis-cli and a raw
// socket through it:
//
//   - Forwarded: keyed commands (SET, GET, INCR, DEL a b, UNLINK, EXISTS,
//     TOUCH, MSET, MGET, EVAL and EVALSHA with at least one key), answered
//     as Redis answers them, wrong arity included. PING is answered by
//     nutcracker itself (+PONG even with the server down); AUTH is answered
//     by nutcracker too (an error unless its pool sets redis_auth). COMMAND
//     is forwarded.
//   - Sharding over several servers, it splits DEL, UNLINK, TOUCH, MGET and
//     MSET per server and joins the replies, but sends EXISTS, PFCOUNT,
//     SINTER, SUNION, … with several keys whole to the server of the first
//     key, which answers for its own keys alone.
//   - Closed on: INFO, CONFIG, CLIENT (REPLY, SETNAME…), HELLO, SELECT,
//     MULTI, EXEC, DISCARD, WATCH, WAIT, WAITAOF, READONLY, ASKING, SCRIPT,
//     EVAL without keys, DBSIZE, TIME, QUIT, the stream commands (XADD,
//     XLEN, XRANGE, XREAD, …), MSETNX, RENAME and unknown commands. The
//     connection is closed without an error reply ("parsed unsupported
//     command" in its log), and the replies of the commands pipelined
//     before it on that connection are lost too, although those commands may
//     have been forwarded and applied.
//   - A server that is down is answered "-ERR Connection refused".
//
// A Twemproxy's methods are safe for concurrent use.
type Twemproxy struct {
	// Addr is "127.0.0.1:<Port>", where clients connect.
	Addr string
	// Port is the proxy's client port.
	Port int
	// StatsPort is nutcracker's statistics port (JSON on connect).
	StatsPort int
	// Backend is the redis-server behind the proxy (the first, when the
	// proxy shards over several).
	Backend *Server
	// Backends are every redis-server behind the proxy, in the config's order.
	Backends []*Server

	opts TwemproxyOptions

	conf, log string        // paths of the YAML config and the log
	cmd       *exec.Cmd     // the running nutcracker
	done      chan struct{} // closed once cmd has been reaped
}

// NewTwemproxy starts nutcracker on free loopback ports in front of
// backend, with its YAML config and log in t.TempDir(), waits until it
// forwards commands, and stops it by PID when the test ends. It fails the
// test (never skips it) when nutcracker is not installed or does not start;
// it must be called from the test's goroutine.
func NewTwemproxy(t testing.TB, backend *Server) *Twemproxy {
	t.Helper()
	return NewTwemproxyWith(t, TwemproxyOptions{}, backend)
}

// TwemproxyOptions are the proxy settings tests vary.
type TwemproxyOptions struct {
	// Timeout is nutcracker's "timeout": how long it waits for a server's
	// reply before answering the client an error (0: forever).
	Timeout time.Duration
}

// NewTwemproxyWith is NewTwemproxy with options, in front of one backend or
// sharding keys over several (modula distribution of crc32a: the same key
// always lands on the same backend).
func NewTwemproxyWith(t testing.TB, o TwemproxyOptions, backends ...*Server) *Twemproxy {
	t.Helper()
	if len(backends) == 0 {
		t.Fatal("redistest: NewTwemproxyWith needs a backend")
	}
	bin, err := nutcrackerBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		ports, err := pickPorts(2)
		if err != nil {
			lastErr = err
			continue
		}
		p := &Twemproxy{
			Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
			Port:      ports[0],
			StatsPort: ports[1],
			Backend:   backends[0],
			Backends:  backends,
			opts:      o,
			conf:      filepath.Join(dir, fmt.Sprintf("nutcracker-%d.yml", ports[0])),
			log:       filepath.Join(dir, fmt.Sprintf("nutcracker-%d.log", ports[0])),
		}
		lastErr = p.launch(bin)
		if lastErr == nil {
			t.Cleanup(p.Stop)
			return p
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	t.Fatal(lastErr)
	return nil
}

// sbinNutcracker is where Debian's package puts nutcracker; tests change it.
var sbinNutcracker = "/usr/sbin/nutcracker"

// nutcrackerBinary returns the path of nutcracker or ErrNutcrackerNotFound.
func nutcrackerBinary() (string, error) {
	path, err := exec.LookPath("nutcracker")
	if err != nil {
		// Debian installs it in /usr/sbin, which a user's PATH may lack.
		if path, err = exec.LookPath(sbinNutcracker); err != nil {
			return "", ErrNutcrackerNotFound
		}
	}
	return path, nil
}

// config is the proxy's YAML: one pool, one connection to each server
// (every client's commands go through it, in order per client).
func (p *Twemproxy) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redistest:\n  listen: %s\n  redis: true\n", p.Addr)
	if len(p.Backends) == 1 {
		b.WriteString("  hash: fnv1a_64\n  distribution: ketama\n")
	} else {
		b.WriteString("  hash: crc32a\n  distribution: modula\n")
	}
	b.WriteString("  auto_eject_hosts: false\n  server_connections: 1\n")
	if p.opts.Timeout > 0 {
		fmt.Fprintf(&b, "  timeout: %d\n", p.opts.Timeout.Milliseconds())
	}
	b.WriteString("  servers:\n")
	for i, s := range p.Backends {
		fmt.Fprintf(&b, "    - %s:1 shard%d\n", s.Addr, i)
	}
	return b.String()
}

// launch writes the config, starts nutcracker and waits until it forwards.
func (p *Twemproxy) launch(bin string) error {
	if err := os.WriteFile(p.conf, []byte(p.config()), 0o600); err != nil {
		return fmt.Errorf("redistest: write nutcracker config: %w", err)
	}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("redistest: open nutcracker log: %w", err)
	}
	p.cmd = exec.Command(bin, "-c", p.conf, "-o", p.log, "-v", "6",
		"-a", "127.0.0.1", "-s", strconv.Itoa(p.StatsPort))
	p.cmd.Stdout, p.cmd.Stderr = out, out // usage errors, before -o applies
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("redistest: start nutcracker: %w", err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	if err := p.waitReady(); err != nil {
		p.Stop()
		log := p.Log()
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("%w: %v", errPortInUse, err)
		}
		return fmt.Errorf("%v; nutcracker log:\n%s", err, log)
	}
	return nil
}

// waitReady polls until the proxy answers PING (nutcracker itself) and
// forwards EXISTS to the server, the process exits, or StartTimeout passes.
func (p *Twemproxy) waitReady() error {
	deadline := time.Now().Add(StartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("redistest: nutcracker on port %d exited during startup", p.Port)
		default:
		}
		if lastErr = p.checkReady(); lastErr == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("redistest: nutcracker on port %d not ready after %v: %v", p.Port, StartTimeout, lastErr)
}

func (p *Twemproxy) checkReady() error {
	c, err := p.Dial(redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		return err
	}
	_, err = redis.Int(c.Do("EXISTS", "redistest:ready"))
	return err
}

// Dial opens a new connection to the proxy. The caller closes it.
func (p *Twemproxy) Dial(opts ...redis.DialOption) (redis.Conn, error) {
	c, err := redis.Dial("tcp", p.Addr, append([]redis.DialOption{redis.DialConnectTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("redistest: dial nutcracker %s: %w", p.Addr, err)
	}
	return c, nil
}

// PID returns nutcracker's process id.
func (p *Twemproxy) PID() int { return p.cmd.Process.Pid }

// Stop ends nutcracker by its PID: SIGTERM, then SIGKILL if it has not
// exited within StopTimeout. It is safe to call more than once.
func (p *Twemproxy) Stop() { stopProcess(p.cmd.Process, p.done, syscall.SIGTERM, StopTimeout) }

// Log returns what nutcracker has logged so far.
func (p *Twemproxy) Log() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}
