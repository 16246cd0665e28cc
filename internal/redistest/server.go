package redistest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Timeouts used by the helpers. They bound every wait so that a broken
// server fails a test instead of hanging it.
const (
	// StartTimeout bounds how long a new server may take to answer PING.
	StartTimeout = 10 * time.Second
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout = 5 * time.Second

	// startAttempts is how often a start is retried when the chosen port
	// turned out to be taken by someone else.
	startAttempts = 5
	// callReadTimeout bounds a single helper command (Call, Do, Info...).
	callReadTimeout = 30 * time.Second
	// maxIdleConns is the number of cached connections used by Call.
	maxIdleConns = 4
)

// ErrRedisNotFound is returned (and reported by the testing.TB variants) when
// no redis-server binary is on PATH.
var ErrRedisNotFound = errors.New("redistest: redis-server not found in PATH; " +
	"install it with `apt-get install -y redis-server` (make test does this)")

// Server is one redis-server process listening on 127.0.0.1.
//
// Its methods are safe for concurrent use, except that Stop, Kill, Restart
// and Close should not race with each other.
type Server struct {
	// Addr is "127.0.0.1:<Port>".
	Addr string
	// Port is the TCP port the server listens on.
	Port int
	// Dir is the server's working directory (--dir); it holds the log file
	// and, for cluster nodes, nodes.conf. Close removes it.
	Dir string

	args       []string    // full redis-server argument list (without the binary)
	extraPorts []int       // ports reserved besides Port (the cluster bus port)
	tlsConfig  *tls.Config // if set, the server is TLS-only and every helper dials TLS with it

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed once cmd has been reaped
	idle   []redis.Conn  // cached connections used by Call
	closed bool
}

// binary returns the path of redis-server or ErrRedisNotFound.
func binary() (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", ErrRedisNotFound
	}
	return path, nil
}

// StartStandalone starts a standalone redis-server on a free loopback port
// and waits until it answers PING. Extra args are appended to the command
// line (for example "--maxmemory", "10mb") and override the defaults; they
// must not change --port, --bind or --dir. The defaults also enable DEBUG
// (for DEBUG SLEEP) and start replication without delay. The caller must
// call Close when done.
func StartStandalone(args ...string) (*Server, error) {
	return start(0, args)
}

// Standalone starts a standalone redis-server like StartStandalone and stops
// it, removing its directory, when the test ends. It fails the test when the
// server cannot be started; it must be called from the test's goroutine.
func Standalone(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := StartStandalone(args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// start creates a server directory and starts redis-server in it with args,
// retrying with other ports when the chosen ones are taken. extraPorts is the
// number of additional free ports to reserve (see startWith).
func start(extraPorts int, args []string) (*Server, error) {
	return startWith(nil, extraPorts, func(string, []int) []string { return args })
}

// startWith is start with arguments that may depend on the server directory
// and the chosen ports: ports[0] is the client port, ports[1:] the extra
// ones. If certs is not nil, the server listens only for TLS (--port 0
// --tls-port ports[0], --tls-auth-clients no) with certs, and the helpers
// talk TLS to it.
func startWith(certs *TLSCerts, extraPorts int, mkArgs func(dir string, ports []int) []string) (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	pattern := "redistest-"
	if certs != nil {
		pattern = "redistest-tls-"
	}
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return nil, fmt.Errorf("redistest: create server dir: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if attempt > 0 {
			// Start afresh: no log or nodes.conf of the failed attempt.
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("redistest: clean server dir: %w", err)
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, fmt.Errorf("redistest: create server dir: %w", err)
			}
		}
		ports, err := pickPorts(1 + extraPorts)
		if err != nil {
			lastErr = err
			continue
		}
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
			Port: ports[0],
			Dir:  dir,

			extraPorts: ports[1:],
		}
		s.args = []string{"--bind", "127.0.0.1"}
		if certs == nil {
			s.args = append(s.args, "--port", strconv.Itoa(ports[0]))
		} else {
			s.tlsConfig = certs.ClientConfig()
			s.args = append(s.args,
				"--port", "0",
				"--tls-port", strconv.Itoa(ports[0]),
				"--tls-cert-file", certs.CertFile,
				"--tls-key-file", certs.KeyFile,
				"--tls-ca-cert-file", certs.CAFile,
				"--tls-auth-clients", "no")
		}
		s.args = append(append(s.args,
			"--save", "",
			"--appendonly", "no",
			"--daemonize", "no",
			"--dir", dir,
			"--logfile", "",
			// Start replication right away instead of waiting 5 s for more
			// replicas to join a diskless transfer.
			"--repl-diskless-sync-delay", "0",
			// Let tests use DEBUG SLEEP and friends; the server is only
			// reachable on loopback.
			"--enable-debug-command", "yes",
		), mkArgs(dir, ports)...)
		err = s.launch(bin)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// errPortInUse marks a start that failed because a port was taken.
var errPortInUse = errors.New("redistest: port already in use")

// pickPorts is freePorts; tests replace it to provoke port clashes.
var pickPorts = freePorts

// freePorts asks the kernel for n distinct free loopback ports. The
// listeners are closed before returning, so a port may be grabbed by someone
// else before redis-server binds it; start retries in that case.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("redistest: find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// launch starts the process with s.args and waits until it answers PING.
func (s *Server) launch(bin string) error { return s.launchWith(bin, s.waitReady) }

// launchWith starts the process with s.args and waits until ready says the
// server with that pid answers (or the process ended: done is closed).
func (s *Server) launchWith(bin string, ready func(pid int, done <-chan struct{}) error) error {
	logPath := filepath.Join(s.Dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("redistest: open log: %w", err)
	}
	var logStart int64
	if st, err := logFile.Stat(); err == nil {
		logStart = st.Size()
	}
	cmd := exec.Command(bin, s.args...)
	cmd.Dir = s.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.closed = cmd, done, false
	s.mu.Unlock()

	if err := ready(cmd.Process.Pid, done); err != nil {
		s.Kill()
		log := s.Log()
		if int64(len(log)) >= logStart {
			log = log[logStart:] // only this run's output
		}
		if errors.Is(err, errPortInUse) || strings.Contains(log, "Address already in use") {
			return fmt.Errorf("%w: %v", errPortInUse, err)
		}
		return fmt.Errorf("%v; server log:\n%s", err, log)
	}
	return nil
}

// waitReady polls PING until it succeeds on a server whose process_id is
// pid, the process exits or StartTimeout passes.
func (s *Server) waitReady(pid int, done <-chan struct{}) error {
	deadline := time.Now().Add(StartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redistest: %s on port %d exited during startup", s.kind(), s.Port)
		default:
		}
		lastErr = s.checkReady(pid)
		if lastErr == nil || errors.Is(lastErr, errPortInUse) {
			return lastErr
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("redistest: %s on port %d not ready after %v: %v", s.kind(), s.Port, StartTimeout, lastErr)
}

// kind names the server in error messages.
func (s *Server) kind() string {
	if s.tlsConfig != nil {
		return "TLS redis-server"
	}
	return "redis-server"
}

// checkReady sends PING (over TLS for a TLS server) and verifies that the
// answering server is ours, not some other process that grabbed the port.
func (s *Server) checkReady(pid int) error {
	c, err := s.Dial(redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(time.Second),
		redis.DialWriteTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		return err
	}
	info, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		return err
	}
	if got := ParseInfo(info)["process_id"]; got != strconv.Itoa(pid) {
		return fmt.Errorf("%w: port %d is served by pid %s, not %d", errPortInUse, s.Port, got, pid)
	}
	// Start the statistics from a clean slate, without our PING and INFO.
	_, err = c.Do("CONFIG", "RESETSTAT")
	return err
}

// PID returns the process id of the running redis-server, or 0 if it has not
// been started.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server process is still alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop shuts the server down gracefully: SIGTERM, then SIGKILL if it has not
// exited within StopTimeout. The process is reaped before Stop returns. The
// directory is kept, so the server can be started again with Restart.
func (s *Server) Stop() {
	s.signalAndWait(syscall.SIGTERM, StopTimeout)
}

// Kill sends SIGKILL to the server, as a crash would, and reaps it. Use it in
// failover tests. The directory is kept.
func (s *Server) Kill() {
	s.signalAndWait(syscall.SIGKILL, 0)
}

// signalAndWait sends sig to the process and waits up to grace for it to
// exit, then kills it and waits for it to be reaped.
func (s *Server) signalAndWait(sig syscall.Signal, grace time.Duration) {
	s.dropIdle()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || done == nil {
		return
	}
	stopProcess(cmd.Process, done, sig, grace)
}

// stopProcess sends sig to p and waits up to grace for it to exit, then
// kills it; it returns once done (closed when p was reaped) is closed.
func stopProcess(p *os.Process, done <-chan struct{}, sig syscall.Signal, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	_ = p.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = p.Signal(syscall.SIGKILL)
		}
	}
	// SIGKILL cannot be ignored; the wait goroutine reaps the process.
	<-done
}

// Restart starts the server again on the same port, directory and
// arguments, after stopping it gracefully if it is still running. A cluster
// node rejoins the cluster with its old identity (nodes.conf is kept).
func (s *Server) Restart() error {
	s.Stop()
	bin, err := binary()
	if err != nil {
		return err
	}
	return s.launch(bin)
}

// RestartLoading is Restart returning as soon as the new process accepts
// connections, while it may still be loading its data: PING then answers
// LOADING. (A server with --key-load-delay loads slowly enough to see it.)
func (s *Server) RestartLoading() error {
	s.Stop()
	bin, err := binary()
	if err != nil {
		return err
	}
	return s.launchWith(bin, func(pid int, done <-chan struct{}) error {
		deadline := time.Now().Add(StartTimeout)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				return fmt.Errorf("redistest: %s on port %d exited during startup", s.kind(), s.Port)
			default:
			}
			if c, err := s.Dial(redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second)); err == nil {
				c.Close()
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return fmt.Errorf("redistest: %s on port %d not accepting after %v", s.kind(), s.Port, StartTimeout)
	})
}

// Close stops the server (see Stop) and removes its directory. It is safe
// to call more than once.
func (s *Server) Close() error {
	s.Stop()
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return nil
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("redistest: remove %s: %w", s.Dir, err)
	}
	return nil
}

// Log returns what the server has written to its log so far (stdout and
// stderr of the process, including earlier runs before a Restart).
func (s *Server) Log() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// String returns the server's address.
func (s *Server) String() string { return s.Addr }

// Dial opens a new connection to the server (a TLS connection to a TLS
// server). The caller closes it.
func (s *Server) Dial(opts ...redis.DialOption) (redis.Conn, error) {
	base := []redis.DialOption{redis.DialConnectTimeout(5 * time.Second)}
	what := "dial"
	if s.tlsConfig != nil {
		base = append(base, redis.DialUseTLS(true), redis.DialTLSConfig(s.tlsConfig))
		what = "dial TLS"
	}
	c, err := redis.Dial("tcp", s.Addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("redistest: %s %s: %w", what, s.Addr, err)
	}
	return c, nil
}

// Conn opens a new connection to the server and closes it when the test
// ends. It has no read timeout unless opts set one.
func (s *Server) Conn(t testing.TB, opts ...redis.DialOption) redis.Conn {
	t.Helper()
	c, err := s.Dial(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Call runs one command on a cached connection and returns redigo's result:
// an error reply from the server comes back as an error of type redis.Error,
// transport failures as other errors. The reply must come within 30 s; use
// Conn for blocking commands that may wait longer. Commands sent by Call (and by Do, Info,
// CommandStats, FlushAll...) show up in the server's command statistics.
func (s *Server) Call(cmd string, args ...any) (any, error) {
	c, err := s.getConn()
	if err != nil {
		return nil, err
	}
	reply, err := c.Do(cmd, args...)
	s.putConn(c)
	return reply, err
}

// Do runs one command like Call and fails the test on transport errors.
// Error replies are returned as values of type redis.Error, so tests can
// assert on them:
//
//	if e, ok := srv.Do(t, "GET", "k", "extra").(redis.Error); !ok { ... }
func (s *Server) Do(t testing.TB, cmd string, args ...any) any {
	t.Helper()
	reply, err := s.Call(cmd, args...)
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return rerr
	}
	if err != nil {
		t.Fatalf("redistest: %s %s on %s: %v", cmd, formatArgs(args), s.Addr, err)
	}
	return reply
}

// MustDo runs one command like Do and also fails the test on error replies.
func (s *Server) MustDo(t testing.TB, cmd string, args ...any) any {
	t.Helper()
	reply, err := s.Call(cmd, args...)
	if err != nil {
		t.Fatalf("redistest: %s %s on %s: %v", cmd, formatArgs(args), s.Addr, err)
	}
	return reply
}

// FlushAll removes every key from the server (FLUSHALL).
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	s.MustDo(t, "FLUSHALL")
}

// ResetStats clears the server's statistics (CONFIG RESETSTAT), so that a
// test sharing a server can assert on CommandStats deltas from zero.
func (s *Server) ResetStats(t testing.TB) {
	t.Helper()
	s.MustDo(t, "CONFIG", "RESETSTAT")
}

func (s *Server) getConn() (redis.Conn, error) {
	s.mu.Lock()
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	return s.Dial(redis.DialReadTimeout(callReadTimeout), redis.DialWriteTimeout(callReadTimeout))
}

func (s *Server) putConn(c redis.Conn) {
	if c.Err() != nil {
		_ = c.Close()
		return
	}
	s.mu.Lock()
	if len(s.idle) < maxIdleConns {
		s.idle = append(s.idle, c)
		c = nil
	}
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// dropIdle closes the cached connections, which a stop or restart breaks.
func (s *Server) dropIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

func formatArgs(args []any) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = fmt.Sprint(a)
	}
	return strings.Join(parts, " ")
}
