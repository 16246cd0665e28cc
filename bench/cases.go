package main

type opKind int

const (
	opSADD opKind = iota // SADD bench:set m:<i>: one key, N members
	opSET                // SET k:<i> <16 bytes>: N keys
)

func (o opKind) String() string {
	if o == opSADD {
		return "SADD"
	}
	return "SET"
}

type modeKind int

const (
	modePlain      modeKind = iota // rbatch InMemory; peers' plain pipeline
	modeMulti                      // rbatch InMemoryAtomic; peers' MULTI … EXEC
	modeSkip                       // rbatch WithSkipResult; peers' plain pipeline
	modeStream                     // rbatch Streaming; peers' plain pipeline
	modeStreamSkip                 // rbatch Streaming with WithSkipResult; peers' plain pipeline
)

// caseSpec is one benchmark case: one batch of n commands.
type caseSpec struct {
	name    string
	n       int // commands per batch
	quickN  int // with -quick
	op      opKind
	mode    modeKind
	cluster bool
	ceiling bool // redis-benchmark only
	small   bool // many goroutines of 3-command batches (small.go)
	what    string
	// heavy: run only rbatch and redigo unless -all-peers (the peers fit in
	// memory but take minutes per run of 10M commands).
	heavy bool
	// fly: keys are made as each command is queued, not taken from a
	// string made beforehand, so that the peak RSS is the client's own.
	fly bool
}

func (c caseSpec) size(quick bool) int {
	if quick {
		return c.quickN
	}
	return c.n
}

var allClients = []string{"rbatch", "redigo", "go-redis", "rueidis"}

var allCases = []caseSpec{
	{name: "sadd100k", n: 100_000, quickN: 20_000, op: opSADD, what: "SADD to one set, one batch (rbatch IN_MEMORY; peers: plain pipeline)"},
	{name: "sadd1m", n: 1_000_000, quickN: 100_000, op: opSADD, what: "SADD to one set, one batch (rbatch IN_MEMORY; peers: plain pipeline)"},
	{name: "set100k", n: 100_000, quickN: 20_000, op: opSET, what: "SET of distinct keys, one batch (rbatch IN_MEMORY via Bucket.SetAsync; peers: plain pipeline)"},
	{name: "set1m", n: 1_000_000, quickN: 100_000, op: opSET, what: "SET of distinct keys, one batch (rbatch IN_MEMORY via Bucket.SetAsync; peers: plain pipeline)"},
	{name: "ceiling", n: 1_000_000, quickN: 100_000, ceiling: true, what: "redis-benchmark, pipelined 1000 deep on one connection: the server's own ceiling"},
	{name: "multi100k", n: 100_000, quickN: 20_000, op: opSADD, mode: modeMulti, what: "SADD in MULTI … EXEC (rbatch IN_MEMORY_ATOMIC; go-redis TxPipeline; rueidis MULTI/EXEC in one DoMulti; redigo MULTI … EXEC)"},
	{name: "skip1m", n: 1_000_000, quickN: 100_000, op: opSADD, mode: modeSkip, what: "SADD, rbatch WithSkipResult (CLIENT REPLY OFF … ON) vs each peer's plain pipeline"},
	{name: "skip10m", n: 10_000_000, quickN: 300_000, op: opSADD, mode: modeSkip, heavy: true, what: "SADD, rbatch WithSkipResult vs each peer's plain pipeline"},
	{name: "stream1m", n: 1_000_000, quickN: 100_000, op: opSET, mode: modeStream, fly: true, what: "SET of distinct keys made on the fly, rbatch STREAMING (sent while queued) vs each peer's plain pipeline"},
	{name: "stream1m-skip", n: 1_000_000, quickN: 100_000, op: opSET, mode: modeStreamSkip, fly: true, what: "as stream1m, rbatch STREAMING with WithSkipResult"},
	{name: "stream10m", n: 10_000_000, quickN: 300_000, op: opSET, mode: modeStream, fly: true, heavy: true, what: "as stream1m with 10M commands: memory must stay flat"},
	{name: "stream10m-skip", n: 10_000_000, quickN: 300_000, op: opSET, mode: modeStreamSkip, fly: true, heavy: true, what: "as stream10m, rbatch STREAMING with WithSkipResult"},
	{name: "small", n: 3, quickN: 3, small: true, what: "3-command batches (SET k v, GET k, INCR c) looped by 8, 128 and 512 goroutines, each client in three 1 s rounds per count (the rounds interleave the clients; the median round is reported) after a 0.5 s untimed warm-up at 8, all in one process"},
	{name: "cluster1m", n: 1_000_000, quickN: 100_000, op: opSET, cluster: true, what: "SET of distinct keys over a 3-primary cluster (rbatch IN_MEMORY; go-redis ClusterClient pipeline; rueidis DoMulti)"},
}

// clients returns the clients that run cs.
func (c caseSpec) clients(o *options) []string {
	if c.heavy && !o.allPeers {
		return []string{"rbatch", "redigo"}
	}
	return allClients
}

func caseByName(name string) (caseSpec, bool) {
	for _, c := range allCases {
		if c.name == name {
			return c, true
		}
	}
	return caseSpec{}, false
}
