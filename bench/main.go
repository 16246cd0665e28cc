// Command bench compares rbatch with hand-written redigo, go-redis v9 and
// rueidis on one large batch against throwaway loopback redis-servers.
//
//	cd bench && go run . [-reps 5] [-cases sadd1m,set1m] [-quick] [-out file.md]
//
// Each client runs in its own child process (this binary re-executed with
// -child), so its peak RSS is its own. See BENCHMARKS.md for the results.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	reps     int
	cases    []caseSpec
	quick    bool
	out      string
	profDir  string
	quiet    time.Duration
	allPeers bool
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func main() {
	reps := flag.Int("reps", 5, "timed repetitions per client and case (after one untimed warm-up)")
	casesFlag := flag.String("cases", "", "comma-separated cases (default: all): "+caseNames())
	quick := flag.Bool("quick", false, "smoke run with small batch sizes")
	out := flag.String("out", "", "write the markdown report to this file (default: stdout)")
	profDir := flag.String("profile", "", "directory for each child's CPU and allocation profiles (<client>-<case>.cpu.prof / .allocs.prof)")
	quiet := flag.Duration("quiet", 5*time.Second, "before each round, wait up to this long for other processes to leave the CPUs idle (0: don't)")
	allPeers := flag.Bool("all-peers", false, "also run go-redis and rueidis in skip10m (minutes per run)")
	// Internal: the child side.
	childSpec := flag.String("child", "", "internal: run as the client child, e.g. client=rbatch,case=sadd1m")
	addrs := flag.String("addrs", "", "internal (child): comma-separated server addresses")
	spids := flag.String("spids", "", "internal (child): comma-separated server PIDs")
	cpuProfile := flag.String("cpuprofile", "", "internal (child): write a CPU profile of the timed runs")
	memProfile := flag.String("memprofile", "", "internal (child): write an allocation profile at exit")
	flag.Parse()

	if *childSpec != "" {
		client, cs, err := parseChildSpec(*childSpec)
		if err != nil {
			logf("%v", err)
			os.Exit(2)
		}
		pids, err := parseInts(*spids)
		if err != nil {
			logf("bad -spids: %v", err)
			os.Exit(2)
		}
		os.Exit(childMain(childArgs{client: client, caseName: cs, addrs: strings.Split(*addrs, ","),
			pids: pids, quick: *quick, cpuProfile: *cpuProfile, memProfile: *memProfile}))
	}

	o := &options{reps: *reps, quick: *quick, out: *out, profDir: *profDir, quiet: *quiet, allPeers: *allPeers}
	if o.reps < 1 {
		logf("-reps must be at least 1")
		os.Exit(2)
	}
	if *casesFlag == "" {
		o.cases = allCases
	} else {
		for _, name := range strings.Split(*casesFlag, ",") {
			cs, ok := caseByName(strings.TrimSpace(name))
			if !ok {
				logf("unknown case %q; cases: %s", name, caseNames())
				os.Exit(2)
			}
			o.cases = append(o.cases, cs)
		}
	}
	if o.profDir != "" {
		if err := os.MkdirAll(o.profDir, 0o755); err != nil {
			logf("%v", err)
			os.Exit(1)
		}
	}
	os.Exit(parentMain(o))
}

func caseNames() string {
	var names []string
	for _, c := range allCases {
		names = append(names, c.name)
	}
	return strings.Join(names, ",")
}

func parentMain(o *options) (code int) {
	// Nothing may outlive the run: kill every server and child by PID on a
	// signal, on a panic and at the end.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigc
		logf("bench: %v: stopping servers and clients", s)
		procs.killAll()
		os.Exit(130)
	}()
	defer func() {
		if r := recover(); r != nil {
			procs.killAll()
			panic(r)
		}
		procs.killAll()
	}()

	start := time.Now()
	var standalone *env
	defer func() {
		if standalone != nil {
			standalone.close()
		}
	}()
	rep := &report{opts: o, start: start, loadStart: loadAvg(), rbatchRev: rbatchRevision()}
	for _, cs := range o.cases {
		logf("== %s (%d commands)", cs.name, cs.size(o.quick))
		var e *env
		var err error
		if cs.cluster {
			e, err = startCluster()
		} else {
			if standalone == nil {
				standalone, err = startStandalone()
			}
			e = standalone
		}
		if err != nil {
			logf("  cannot start redis: %v", err)
			rep.results = append(rep.results, &caseResult{spec: cs, n: cs.size(o.quick), benchErr: "redis: " + err.Error()})
			continue
		}
		if rep.redisVersion == "" {
			rep.redisVersion = e.version()
		}
		var res *caseResult
		if cs.small {
			res = runSmall(cs, e, o)
		} else if cs.ceiling {
			res = runCeiling(cs, e, o)
			res.notes = append(res.notes, "command: `redis-benchmark "+strings.Join(ceilingArgs(e.nodes[0], res.n), " ")+"`")
		} else {
			res = runCase(cs, e, o)
		}
		if cs.cluster {
			e.close()
		}
		rep.results = append(rep.results, res)
	}
	rep.elapsed = time.Since(start)

	text := rep.markdown()
	if o.out == "" {
		fmt.Print(text)
	} else if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
		logf("write %s: %v", o.out, err)
		return 1
	} else {
		logf("wrote %s", o.out)
	}
	logf("total %v", rep.elapsed.Round(time.Second))
	return 0
}
