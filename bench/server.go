package main

import (
	"context"
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
	"time"

	"github.com/gomodule/redigo/redis"
)

// procs remembers every process the parent started (redis-servers, client
// children, redis-cli, redis-benchmark) and the temp dirs it made, so that
// they are killed by PID and removed at the end, on a signal or on a panic.
// Each process also gets Pdeathsig=SIGKILL, so none outlives the parent.
var procs = &registry{live: map[int]*os.Process{}}

type registry struct {
	mu   sync.Mutex
	live map[int]*os.Process
	dirs []string
}

func (r *registry) add(p *os.Process) {
	r.mu.Lock()
	r.live[p.Pid] = p
	r.mu.Unlock()
}

func (r *registry) forget(p *os.Process) {
	r.mu.Lock()
	delete(r.live, p.Pid)
	r.mu.Unlock()
}

func (r *registry) addDir(d string) {
	r.mu.Lock()
	r.dirs = append(r.dirs, d)
	r.mu.Unlock()
}

// killAll SIGKILLs every live process by its PID and removes the temp dirs.
func (r *registry) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid, p := range r.live {
		_ = p.Kill()
		delete(r.live, pid)
	}
	for _, d := range r.dirs {
		_ = os.RemoveAll(d)
	}
	r.dirs = nil
}

// sysProcAttr makes the kernel kill the process if the parent dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// runTool runs a helper binary (redis-cli, redis-benchmark) bounded by
// timeout and returns its combined output.
func runTool(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = sysProcAttr()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	procs.add(cmd.Process)
	err := cmd.Wait()
	procs.forget(cmd.Process)
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v", name, timeout)
	}
	return out.String(), err
}

// redisProc is one redis-server on 127.0.0.1.
type redisProc struct {
	Addr string
	Port int
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// PID is the server's process id; its main thread has the same id.
func (s *redisProc) PID() int { return s.cmd.Process.Pid }

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startRedis starts redis-server on a free loopback port with no
// persistence, in a temp dir, and waits until it answers PING.
func startRedis(cluster bool) (*redisProc, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := tryStartRedis(cluster)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStartRedis(cluster bool) (*redisProc, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rbatch-bench-")
	if err != nil {
		return nil, err
	}
	procs.addDir(dir)
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
	}
	if cluster {
		args = append(args, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(ports[1]))
	}
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	procs.add(cmd.Process)
	s := &redisProc{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), Port: ports[0], Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			s.Close()
			return nil, fmt.Errorf("redis-server exited at start: %s", lastLines(string(log), 5))
		default:
		}
		if _, err := s.do("PING"); err == nil {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Close()
	return nil, errors.New("redis-server did not answer PING within 10s")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Close kills the server by PID and removes its dir.
func (s *redisProc) Close() {
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	procs.forget(s.cmd.Process)
	_ = os.RemoveAll(s.Dir)
}

// do runs one command on a fresh connection, bounded in time.
func (s *redisProc) do(cmd string, args ...any) (any, error) {
	c, err := redis.Dial("tcp", s.Addr, redis.DialConnectTimeout(2*time.Second),
		redis.DialReadTimeout(2*time.Minute), redis.DialWriteTimeout(time.Minute))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(cmd, args...)
}

// env is the Redis a case runs against: one server, or a cluster's primaries.
type env struct {
	nodes   []*redisProc
	cluster bool
}

func (e *env) addrs() []string {
	var a []string
	for _, n := range e.nodes {
		a = append(a, n.Addr)
	}
	return a
}

func (e *env) pids() []int {
	var p []int
	for _, n := range e.nodes {
		p = append(p, n.PID())
	}
	return p
}

func (e *env) close() {
	for _, n := range e.nodes {
		n.Close()
	}
}

// flush empties every node (untimed, synchronous).
func (e *env) flush() error {
	for _, n := range e.nodes {
		if _, err := n.do("FLUSHALL"); err != nil {
			return fmt.Errorf("FLUSHALL %s: %w", n.Addr, err)
		}
	}
	return nil
}

// dbsize sums DBSIZE over the nodes.
func (e *env) dbsize() (int64, error) {
	var sum int64
	for _, n := range e.nodes {
		v, err := redis.Int64(n.do("DBSIZE"))
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

func (e *env) scard(key string) (int64, error) {
	return redis.Int64(e.nodes[0].do("SCARD", key))
}

func (e *env) version() string {
	info, err := redis.String(e.nodes[0].do("INFO", "server"))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}

func startStandalone() (*env, error) {
	s, err := startRedis(false)
	if err != nil {
		return nil, err
	}
	return &env{nodes: []*redisProc{s}}, nil
}

// startCluster starts three cluster-enabled primaries, joins them with
// redis-cli --cluster create and waits for cluster_state:ok on every node.
func startCluster() (*env, error) {
	e := &env{cluster: true}
	for i := 0; i < 3; i++ {
		s, err := startRedis(true)
		if err != nil {
			e.close()
			return nil, err
		}
		e.nodes = append(e.nodes, s)
	}
	args := append([]string{"--cluster", "create"}, e.addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := runTool(time.Minute, "redis-cli", args...); err != nil {
		e.close()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, lastLines(out, 5))
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range e.nodes {
		for {
			info, err := redis.String(n.do("CLUSTER", "INFO"))
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				e.close()
				return nil, fmt.Errorf("cluster not ok on %s after 30s", n.Addr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return e, nil
}

// threadTicks reads utime+stime (clock ticks) of the main thread of pid.
func threadTicks(pid int) (int64, error) {
	return procTicks(fmt.Sprintf("/proc/%d/task/%d/stat", pid, pid))
}

// procTicks reads utime+stime (clock ticks) from a /proc stat file.
func procTicks(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad stat fields")
	}
	return u + st, nil
}

// clkTck is sysconf(_SC_CLK_TCK), 100 on Linux.
const clkTck = 100
