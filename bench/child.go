package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// The child side: one client library, one case, in its own process, so that
// its peak RSS is its own. The parent drives it over stdin/stdout, one JSON
// line per request:
//
//	(start)  → {"ready":true} | {"na":"…"} | {"err":"…"}
//	warmup   → runResult (untimed run; the parent discards it)
//	run      → runResult
//	quit     → {"rss_mb":…}
type childMsg struct {
	Ready bool       `json:"ready,omitempty"`
	NA    string     `json:"na,omitempty"`
	Err   string     `json:"err,omitempty"`
	Run   *runResult `json:"run,omitempty"`
	RSSMB float64    `json:"rss_mb,omitempty"`
}

type runResult struct {
	N        int       `json:"n"`
	Seconds  float64   `json:"seconds"`
	OpsPerS  float64   `json:"ops_per_s"`
	AllocsOp float64   `json:"allocs_per_op"`
	BytesOp  float64   `json:"bytes_per_op"`
	CPUShare []float64 `json:"server_cpu_share"` // per server node, main thread
	// ClientCPU is the child's own CPU (all threads), in cores; OtherCPU is
	// what every other process but the servers used meanwhile, in cores: a
	// measure of outside noise.
	ClientCPU float64 `json:"client_cpu"`
	OtherCPU  float64 `json:"other_cpu"`
	// BuildShare is the part of the wall time spent queueing the commands
	// before the library was asked to send them.
	BuildShare float64 `json:"build_share"`
	Err        string  `json:"err,omitempty"`
}

type childArgs struct {
	client, caseName string
	addrs            []string
	pids             []int
	quick            bool
	cpuProfile       string
	memProfile       string
}

// parseChildSpec parses "client=rbatch,case=sadd1m".
func parseChildSpec(spec string) (client, cs string, err error) {
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "client":
			client = v
		case "case":
			cs = v
		default:
			return "", "", fmt.Errorf("bad -child spec %q", spec)
		}
	}
	if client == "" || cs == "" {
		return "", "", fmt.Errorf("bad -child spec %q", spec)
	}
	return client, cs, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func childMain(a childArgs) int {
	out := json.NewEncoder(os.Stdout)
	say := func(m childMsg) { _ = out.Encode(m) }
	cs, ok := caseByName(a.caseName)
	if !ok {
		say(childMsg{Err: "unknown case " + a.caseName})
		return 2
	}
	n := cs.size(a.quick)
	d := newDataset(n, cs.op, cs.fly)
	ctx := context.Background()
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	r, err := newRunner(dialCtx, a.client, cs, a.addrs)
	cancel()
	if err != nil {
		var na errNA
		if errors.As(err, &na) {
			say(childMsg{NA: na.reason})
			return 0
		}
		say(childMsg{Err: err.Error()})
		return 1
	}
	defer r.close()
	say(childMsg{Ready: true})

	profiling := false
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "warmup", "run":
			if in.Text() == "run" && a.cpuProfile != "" && !profiling {
				if f, err := os.Create(a.cpuProfile); err == nil {
					if pprof.StartCPUProfile(f) == nil {
						profiling = true
						defer func() { pprof.StopCPUProfile(); f.Close() }()
					}
				}
			}
			res := measure(ctx, r, cs, d, a.pids)
			say(childMsg{Run: &res})
		case "quit":
			if profiling {
				pprof.StopCPUProfile()
				profiling = false
			}
			if a.memProfile != "" {
				if f, err := os.Create(a.memProfile); err == nil {
					_ = pprof.Lookup("allocs").WriteTo(f, 0)
					f.Close()
				}
			}
			say(childMsg{RSSMB: peakRSSMB()})
			return 0
		}
	}
	return 0
}

// measure runs one batch. Timed: building the batch, executing it and
// checking the replies. Around it: MemStats deltas and the server main
// threads' CPU ticks.
func measure(ctx context.Context, r runner, cs caseSpec, d *dataset, pids []int) runResult {
	runtime.GC()
	var m0, m1 runtime.MemStats
	t0 := make([]int64, len(pids))
	for i, p := range pids {
		t0[i], _ = threadTicks(p)
	}
	s0 := sysTicks(pids)
	runtime.ReadMemStats(&m0)
	start := time.Now()
	var sent time.Time
	err := r.run(ctx, cs, d, &sent)
	el := time.Since(start)
	runtime.ReadMemStats(&m1)
	s1 := sysTicks(pids)
	res := runResult{N: d.n, Seconds: el.Seconds(), OpsPerS: float64(d.n) / el.Seconds(),
		AllocsOp: float64(m1.Mallocs-m0.Mallocs) / float64(d.n),
		BytesOp:  float64(m1.TotalAlloc-m0.TotalAlloc) / float64(d.n)}
	for i, p := range pids {
		t1, _ := threadTicks(p)
		res.CPUShare = append(res.CPUShare, float64(t1-t0[i])/clkTck/el.Seconds())
	}
	if !sent.IsZero() {
		res.BuildShare = sent.Sub(start).Seconds() / el.Seconds()
	}
	res.ClientCPU = float64(s1.self-s0.self) / clkTck / el.Seconds()
	other := (s1.busy - s0.busy) - (s1.self - s0.self) - (s1.servers - s0.servers)
	res.OtherCPU = max(0, float64(other)/clkTck/el.Seconds())
	if err != nil {
		res.Err = err.Error()
	}
	debug.FreeOSMemory() // give the batch's memory back before the next client runs
	return res
}

// peakRSSMB reads VmHWM from /proc/self/status.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

type ticks struct{ busy, self, servers int64 }

// sysTicks reads the busy ticks of the whole machine (/proc/stat), of this
// process and of the server processes (all their threads).
func sysTicks(pids []int) ticks {
	var t ticks
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
		for i := 1; i < len(f) && i <= 8; i++ {
			if i == 4 || i == 5 {
				continue // idle, iowait
			}
			v, _ := strconv.ParseInt(f[i], 10, 64)
			t.busy += v
		}
	}
	t.self, _ = procTicks("/proc/self/stat")
	for _, p := range pids {
		v, _ := procTicks(fmt.Sprintf("/proc/%d/stat", p))
		t.servers += v
	}
	return t
}
