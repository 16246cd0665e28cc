package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clientResult is what one client did in one case.
type clientResult struct {
	client string
	na     string // why it could not run at all
	errs   []string
	runs   []runResult
	rssMB  float64
}

// caseResult is one case's outcome.
type caseResult struct {
	spec    caseSpec
	n       int
	clients []*clientResult
	// ceiling case only: redis-benchmark requests/s per test, and the
	// server main thread share over the whole command.
	bench    map[string][]float64
	benchCPU []float64
	benchErr string
	notes    []string
	table    string // small case: its markdown table
}

// child is the parent's handle on one client process.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startChild(client string, cs caseSpec, e *env, o *options) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pids := make([]string, 0, len(e.nodes))
	for _, p := range e.pids() {
		pids = append(pids, strconv.Itoa(p))
	}
	args := []string{"-child", "client=" + client + ",case=" + cs.name,
		"-addrs", strings.Join(e.addrs(), ","), "-spids", strings.Join(pids, ",")}
	if o.quick {
		args = append(args, "-quick")
	}
	if o.profDir != "" {
		base := filepath.Join(o.profDir, client+"-"+cs.name)
		args = append(args, "-cpuprofile", base+".cpu.prof", "-memprofile", base+".allocs.prof")
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	procs.add(cmd.Process)
	c := &child{name: client, cmd: cmd, stdin: stdin, lines: make(chan string, 4)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c, nil
}

// read waits for the child's next message, killing it after timeout.
func (c *child) read(timeout time.Duration) (childMsg, error) {
	var m childMsg
	select {
	case l, ok := <-c.lines:
		if !ok {
			return m, fmt.Errorf("%s: child exited", c.name)
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			return m, fmt.Errorf("%s: bad line %q: %w", c.name, l, err)
		}
		return m, nil
	case <-time.After(timeout):
		c.kill()
		return m, fmt.Errorf("%s: no answer within %v; killed", c.name, timeout)
	}
}

func (c *child) request(req string, timeout time.Duration) (childMsg, error) {
	if _, err := io.WriteString(c.stdin, req+"\n"); err != nil {
		return childMsg{}, fmt.Errorf("%s: %w", c.name, err)
	}
	return c.read(timeout)
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
}

// finish asks the child to quit (getting its peak RSS) and reaps it.
func (c *child) finish() float64 {
	m, err := c.request("quit", 30*time.Second)
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.kill()
		<-done
	}
	procs.forget(c.cmd.Process)
	if err != nil {
		return 0
	}
	return m.RSSMB
}

// runTimeout bounds one batch: generous, but a stuck client cannot hang the run.
func runTimeout(n int) time.Duration {
	return 60*time.Second + time.Duration(n)*30*time.Microsecond
}

// verify checks what the batch left in Redis.
func verify(e *env, cs caseSpec, n int) error {
	var got int64
	var err error
	what := "DBSIZE"
	if cs.op == opSADD {
		what = "SCARD"
		got, err = e.scard(setKey)
	} else {
		got, err = e.dbsize()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if got != int64(n) {
		return fmt.Errorf("%s = %d, want %d", what, got, n)
	}
	return nil
}

// runCase runs one client case: every client in its own child process, one
// untimed warm-up each, then o.reps timed rounds interleaving the clients.
func runCase(cs caseSpec, e *env, o *options) *caseResult {
	n := cs.size(o.quick)
	res := &caseResult{spec: cs, n: n}
	var kids []*child
	var live []*clientResult
	if cs.heavy && !o.allPeers {
		res.notes = append(res.notes, "go-redis and rueidis left out to bound the run time (run with -all-peers to include them; "+
			"they fit in memory: about 2.1–2.5 GB peak RSS each at 10M).")
	}
	for _, name := range cs.clients(o) {
		cr := &clientResult{client: name}
		res.clients = append(res.clients, cr)
		ch, err := startChild(name, cs, e, o)
		if err != nil {
			cr.na = "failed to start: " + err.Error()
			continue
		}
		m, err := ch.read(2 * time.Minute)
		switch {
		case err != nil:
			cr.na = err.Error()
		case m.NA != "":
			cr.na = m.NA
		case m.Err != "":
			cr.na = "error: " + m.Err
		}
		if cr.na != "" {
			ch.finish()
			logf("  %-8s n/a: %s", name, cr.na)
			continue
		}
		kids = append(kids, ch)
		live = append(live, cr)
	}
	one := func(i int, req string) (runResult, error) {
		if err := e.flush(); err != nil {
			return runResult{}, err
		}
		m, err := kids[i].request(req, runTimeout(n))
		if err != nil {
			return runResult{}, err
		}
		if m.Run == nil {
			return runResult{}, fmt.Errorf("unexpected answer %+v", m)
		}
		if m.Run.Err != "" {
			return *m.Run, fmt.Errorf("batch failed: %s", m.Run.Err)
		}
		return *m.Run, verify(e, cs, n)
	}
	dead := make([]bool, len(kids))
	for i := range kids {
		if _, err := one(i, "warmup"); err != nil {
			live[i].errs = append(live[i].errs, "warm-up: "+err.Error())
			logf("  %-8s warm-up: %v", live[i].client, err)
		}
	}
	for rep := 1; rep <= o.reps; rep++ {
		waitQuiet(o)
		for i := range kids {
			if dead[i] {
				continue
			}
			r, err := one(i, "run")
			if err != nil {
				live[i].errs = append(live[i].errs, fmt.Sprintf("rep %d: %v", rep, err))
				logf("  %-8s rep %d: %v", live[i].client, rep, err)
				if strings.Contains(err.Error(), "killed") || strings.Contains(err.Error(), "exited") {
					dead[i] = true
				}
				continue
			}
			live[i].runs = append(live[i].runs, r)
			logf("  rep %d %-8s %10.0f ops/s  %6.2f allocs/op  %7.1f B/op  server %s  client %.2f  other %.2f  build %.0f%%",
				rep, live[i].client, r.OpsPerS, r.AllocsOp, r.BytesOp, fmtShares(r.CPUShare), r.ClientCPU, r.OtherCPU, 100*r.BuildShare)
		}
	}
	for i, ch := range kids {
		live[i].rssMB = ch.finish()
	}
	_ = e.flush()
	return res
}

// runCeiling runs redis-benchmark (once untimed, then o.reps times).
func runCeiling(cs caseSpec, e *env, o *options) *caseResult {
	n := cs.size(o.quick)
	res := &caseResult{spec: cs, n: n, bench: map[string][]float64{}}
	args := ceilingArgs(e.nodes[0], n)
	pid := e.nodes[0].PID()
	for rep := 0; rep <= o.reps; rep++ {
		waitQuiet(o)
		if err := e.flush(); err != nil {
			res.benchErr = err.Error()
			return res
		}
		t0, _ := threadTicks(pid)
		start := time.Now()
		out, err := runTool(5*time.Minute, "redis-benchmark", args...)
		el := time.Since(start)
		t1, _ := threadTicks(pid)
		if err != nil {
			res.benchErr = fmt.Sprintf("%v: %s", err, lastLines(out, 3))
			return res
		}
		rps := parseBenchCSV(out)
		if len(rps) == 0 {
			res.benchErr = "no results in redis-benchmark output: " + lastLines(out, 3)
			return res
		}
		if rep == 0 {
			continue // warm-up
		}
		for t, v := range rps {
			res.bench[t] = append(res.bench[t], v)
		}
		res.benchCPU = append(res.benchCPU, float64(t1-t0)/clkTck/el.Seconds())
		logf("  rep %d redis-benchmark %v cpu %.2f", rep, rps, res.benchCPU[len(res.benchCPU)-1])
	}
	_ = e.flush()
	return res
}

func ceilingArgs(s *redisProc, n int) []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-c", "1", "-r", strconv.Itoa(n),
		"-n", strconv.Itoa(n), "-P", "1000", "-t", "sadd,set", "--csv"}
}

// parseBenchCSV reads redis-benchmark --csv lines such as
// "SET","1234567.00",… into test → requests per second.
func parseBenchCSV(out string) map[string]float64 {
	rps := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(l), ",")
		if len(f) < 2 {
			continue
		}
		name := strings.Trim(f[0], `"`)
		v, err := strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
		if err != nil || name == "test" {
			continue
		}
		rps[name] = v
	}
	return rps
}

// quietStats counts the waits for an idle machine and how many gave up.
var quietStats struct{ waits, timeouts int }

// waitQuiet waits, up to o.quiet, until the machine's busy CPU (everything,
// while our own processes idle) stays under 0.25 cores for half a second, so
// that a round does not start in the middle of someone else's burst.
func waitQuiet(o *options) {
	if o.quiet <= 0 {
		return
	}
	quietStats.waits++
	deadline := time.Now().Add(o.quiet)
	for {
		t0 := sysTicks(nil)
		time.Sleep(500 * time.Millisecond)
		t1 := sysTicks(nil)
		if float64(t1.busy-t0.busy)/clkTck/0.5 < 0.25 {
			return
		}
		if time.Now().After(deadline) {
			quietStats.timeouts++
			return
		}
	}
}
