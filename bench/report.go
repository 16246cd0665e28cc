package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

type report struct {
	opts         *options
	start        time.Time
	elapsed      time.Duration
	redisVersion string
	loadStart    string
	rbatchRev    string
	results      []*caseResult
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (lo, hi float64) {
	for i, x := range v {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// commas formats 1234567.8 as "1,234,568".
func commas(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtShares(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " / ")
}

func pick(runs []runResult, f func(runResult) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// medianShares is the per-node median of the server CPU shares.
func medianShares(runs []runResult) []float64 {
	if len(runs) == 0 {
		return nil
	}
	out := make([]float64, len(runs[0].CPUShare))
	for i := range out {
		out[i] = median(pick(runs, func(r runResult) float64 {
			if i < len(r.CPUShare) {
				return r.CPUShare[i]
			}
			return 0
		}))
	}
	return out
}

func (r *report) ceilingFor(test string, n int) []float64 {
	for _, c := range r.results {
		if c.spec.ceiling && c.n == n && len(c.bench[test]) > 0 {
			return c.bench[test]
		}
	}
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func depVersions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "?"
	}
	var parts []string
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/gomodule/redigo", "github.com/redis/go-redis/v9", "github.com/redis/rueidis":
			parts = append(parts, d.Path+" "+d.Version)
		}
	}
	return strings.Join(parts, ", ")
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t'\"$\\;&|<>*?()") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (r *report) command() string {
	parts := []string{"cd bench && go run ."}
	for _, a := range os.Args[1:] {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# rbatch benchmarks\n\n")
	w("One large batch per run, against a throwaway `redis-server` on 127.0.0.1 (`--save '' --appendonly no`),\n")
	w("rbatch (public API) against a hand-written redigo pipeline, go-redis v9 and rueidis.\n")
	w("Reproduce with `make bench` (prints to stdout) or `cd bench && go run . -reps 5 -out ../BENCHMARKS.md`;\n")
	w("`-cases` picks cases, `-quick` is a smoke run, `-profile DIR` writes each child's CPU and allocation profiles.\n\n")
	w("**Runs are noisy (±30%% between runs on this kind of machine): compare ratios within one run, not\n")
	w("absolute figures across runs.**\n\n")
	w("How it measures:\n\n")
	w("- Each client runs in its own child process (the bench binary re-executed), so peak RSS (`VmHWM`) is its own;\n")
	w("  it includes the pre-generated members/keys (10 bytes per command, shared by all clients alike).\n")
	w("- Per case: one untimed warm-up per client, then %d timed reps, interleaving the clients in each rep\n", r.opts.reps)
	w("  (rbatch, redigo, go-redis, rueidis). The DB is flushed before every run (untimed).\n")
	w("- Timed: building the batch, executing it and checking every reply for an error. After each run the\n")
	w("  result is checked in Redis (SCARD or DBSIZE equals the command count).\n")
	w("- allocs/op and B/op: `runtime.MemStats` deltas around the timed batch divided by the command count.\n")
	w("- server CPU share: utime+stime of the redis-server main thread (`/proc/<pid>/task/<pid>/stat`) during\n")
	w("  the timed batch divided by its wall time; ~1.00 means the server's single thread was the bottleneck.\n")
	w("- ratio vs rbatch: the client's median ops/s divided by rbatch's (> 1: faster than rbatch). Medians over the reps.\n")
	w("- client CPU: the child's own CPU time (all threads) over the wall time, in cores. other load: CPU that every\n")
	w("  process other than the child and the servers used meanwhile (from /proc/stat), in cores, out of nproc —\n")
	w("  when it is well above 0, something else on the machine competed with the run.\n")
	w("- build share: the part of the timed wall time spent queueing commands before the library was asked to\n")
	w("  send them (rbatch's AddAsync/SetAsync calls, go-redis's pipe.SAdd, rueidis's B()…Build()); the server\n")
	w("  idles meanwhile. The redigo loop sends as it goes (0%%).\n\n")
	w("Machine: nproc %d, %s, %s %s/%s, redis-server %s.  \n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH, r.redisVersion)
	w("Clients: rbatch (this repo via `replace`, %s), %s.  \n", r.rbatchRev, depVersions())
	w("Command: `%s` (total wall time %v).  \n", r.command(), r.elapsed.Round(time.Second))
	w("Load average at start / end: %s / %s. Rounds that started after waiting for idle CPUs: %d of %d\n",
		r.loadStart, loadAvg(), quietStats.waits-quietStats.timeouts, quietStats.waits)
	w("(the others started after -quiet %v anyway). Median other load over all timed runs: %.2f cores of %d.\n\n",
		r.opts.quiet, r.medianOtherLoad(), runtime.NumCPU())

	for _, c := range r.results {
		if c.spec.ceiling {
			r.ceilingTable(&b, c)
			continue
		}
		if c.spec.small {
			r.smallTable(&b, c)
			continue
		}
		r.caseTable(&b, c)
	}
	return b.String()
}

func (r *report) caseTable(b *strings.Builder, c *caseResult) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## %s — %s × %s\n\n%s.\n\n", c.spec.name, commas(float64(c.n)), c.spec.op, c.spec.what)
	if c.benchErr != "" {
		w("Not run: %s\n\n", c.benchErr)
		return
	}
	var base float64
	for _, cr := range c.clients {
		if cr.client == "rbatch" && len(cr.runs) > 0 {
			base = median(pick(cr.runs, func(r runResult) float64 { return r.OpsPerS }))
		}
	}
	w("| client | median ops/s | ratio vs rbatch | allocs/op | B/op | peak RSS MB | server CPU share | ops/s min–max (runs) | client CPU | other load | build share |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var notes []string
	for _, cr := range c.clients {
		switch {
		case cr.na != "":
			w("| %s | n/a | | | | | | | | | |\n", cr.client)
			notes = append(notes, fmt.Sprintf("%s: n/a (%s)", cr.client, cr.na))
			continue
		case len(cr.runs) == 0:
			w("| %s | failed | | | | %.0f | | | | | |\n", cr.client, cr.rssMB)
		default:
			ops := pick(cr.runs, func(r runResult) float64 { return r.OpsPerS })
			med := median(ops)
			ratio := "—"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f×", med/base)
			}
			lo, hi := minMax(ops)
			w("| %s | %s | %s | %.2f | %.0f | %.0f | %s | %s–%s (%d) | %.2f | %.2f | %.0f%% |\n", cr.client, commas(med), ratio,
				median(pick(cr.runs, func(r runResult) float64 { return r.AllocsOp })),
				median(pick(cr.runs, func(r runResult) float64 { return r.BytesOp })),
				cr.rssMB, fmtShares(medianShares(cr.runs)), commas(lo), commas(hi), len(cr.runs),
				median(pick(cr.runs, func(r runResult) float64 { return r.ClientCPU })),
				median(pick(cr.runs, func(r runResult) float64 { return r.OtherCPU })),
				100*median(pick(cr.runs, func(r runResult) float64 { return r.BuildShare })))
		}
		for _, e := range cr.errs {
			notes = append(notes, fmt.Sprintf("%s: %s", cr.client, e))
		}
	}
	if !c.spec.cluster && c.spec.mode == modePlain {
		if v := r.ceilingFor(c.spec.op.String(), c.n); len(v) > 0 {
			med := median(v)
			ratio := "—"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f×", med/base)
			}
			w("| redis-benchmark -P 1000 (server ceiling, see below) | %s | %s | | | | | | | | |\n", commas(med), ratio)
		}
	}
	w("\n")
	if c.spec.cluster {
		w("Server CPU share is per primary.\n\n")
	}
	for _, n := range append(c.notes, notes...) {
		w("- %s\n", n)
	}
	if len(c.notes)+len(notes) > 0 {
		w("\n")
	}
}

func (r *report) smallTable(b *strings.Builder, c *caseResult) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## %s — small batches from many goroutines\n\n%s.\n\n", c.spec.name, c.spec.what)
	if c.benchErr != "" {
		w("Not run: %s\n\n", c.benchErr)
		return
	}
	w("%s\n", c.table)
	for _, n := range c.notes {
		w("- %s\n", n)
	}
	w("\n")
}

func (r *report) ceilingTable(b *strings.Builder, c *caseResult) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## %s — redis-benchmark, %s requests per test\n\n%s.\n\n", c.spec.name, commas(float64(c.n)), c.spec.what)
	if c.benchErr != "" {
		w("Not run: %s\n\n", c.benchErr)
		return
	}
	w("| test | median requests/s | min–max (runs) |\n|---|---:|---:|\n")
	var tests []string
	for t := range c.bench {
		tests = append(tests, t)
	}
	sort.Strings(tests)
	for _, t := range tests {
		lo, hi := minMax(c.bench[t])
		w("| %s | %s | %s–%s (%d) |\n", t, commas(median(c.bench[t])), commas(lo), commas(hi), len(c.bench[t]))
	}
	w("\nServer main thread CPU share over the whole command (both tests, connection setup included): %.2f (median).\n\n", median(c.benchCPU))
	for _, n := range c.notes {
		w("- %s\n", n)
	}
	w("\n")
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// rbatchRevision describes the rbatch source benchmarked: the commit and
// whether the work tree had changes.
func rbatchRevision() string {
	rev, err := runTool(10*time.Second, "git", "-C", "..", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "revision unknown"
	}
	s := "commit " + strings.TrimSpace(rev)
	if st, err := runTool(10*time.Second, "git", "-C", "..", "status", "--porcelain", "--untracked-files=no", "--", "."); err == nil && strings.TrimSpace(st) != "" {
		s += " plus uncommitted changes"
	}
	return s
}

// medianOtherLoad is the median "other load" over every timed client run.
func (r *report) medianOtherLoad() float64 {
	var v []float64
	for _, c := range r.results {
		for _, cr := range c.clients {
			v = append(v, pick(cr.runs, func(r runResult) float64 { return r.OtherCPU })...)
		}
	}
	return median(v)
}
