package rbatchotel_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/rbatchotel"
)

var srv *redistest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = redistest.StartStandalone()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

// instrumented is a client of addrs with the hook installed, and what the
// hook recorded.
type instrumented struct {
	c      *rbatch.Client
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newInstrumented(t *testing.T, addrs ...string) *instrumented {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: addrs})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.AddHook(rbatchotel.NewHook(rbatchotel.WithTracerProvider(tp), rbatchotel.WithMeterProvider(mp)))
	return &instrumented{c: c, spans: spans, reader: reader}
}

// batches returns the ended spans without a parent (one per batch), and
// the children of each, by the parent's span ID.
func (in *instrumented) batches() (roots []sdktrace.ReadOnlySpan, children map[trace.SpanID][]sdktrace.ReadOnlySpan) {
	children = map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range in.spans.Ended() {
		if s.Parent().IsValid() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	return roots, children
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func hostPort(t *testing.T, addr string) (string, int64) {
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.ParseInt(port, 10, 64)
	require.NoError(t, err)
	return host, p
}

func TestBatchSpans(t *testing.T) {
	host, port := hostPort(t, srv.Addr)
	cases := []struct {
		name  string
		opts  []rbatch.Option
		fill  func(b *rbatch.Batch)
		op    string
		size  int64 // db.operation.batch.size; 0: not set
		error string
	}{
		{"plain", nil, func(b *rbatch.Batch) {
			b.Bucket("ot:a").SetAsync("1")
			b.Bucket("ot:a").GetAsync()
			b.AtomicLong("ot:n").IncrementAndGetAsync()
		}, "PIPELINE", 3, ""},
		{"every command SET", nil, func(b *rbatch.Batch) {
			for i := range 5 {
				b.Bucket("ot:s" + strconv.Itoa(i)).SetAsync(i)
			}
		}, "PIPELINE SET", 5, ""},
		{"one command", nil, func(b *rbatch.Batch) { b.Bucket("ot:one").GetAsync() }, "GET", 0, ""},
		{"atomic", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, func(b *rbatch.Batch) {
			b.Bucket("ot:t").SetAsync("1")
			b.AtomicLong("ot:tn").IncrementAndGetAsync()
		}, "MULTI", 2, ""},
		{"skip-result, no span per command", []rbatch.Option{rbatch.WithSkipResult()}, func(b *rbatch.Batch) {
			for i := range 10000 {
				b.Set("ot:set").AddAsync(i)
			}
		}, "PIPELINE SADD", 10000, ""},
		{"WRONGTYPE", nil, func(b *rbatch.Batch) {
			b.Bucket("ot:str").SetAsync("x")
			b.List("ot:str").AddAsync("y")
		}, "PIPELINE", 2, "WRONGTYPE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstrumented(t, srv.Addr)
			b := in.c.NewBatch(tc.opts...)
			tc.fill(b)
			_, err := b.Execute(context.Background())
			if tc.error == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}

			require.Len(t, in.spans.Ended(), 2, "one span for the batch, one for its node: never one per command")
			roots, children := in.batches()
			require.Len(t, roots, 1)
			root := roots[0]
			assert.Equal(t, tc.op, root.Name())
			assert.Equal(t, trace.SpanKindClient, root.SpanKind())
			a := attrs(root)
			assert.Equal(t, "redis", a["db.system.name"].AsString())
			assert.Equal(t, tc.op, a["db.operation.name"].AsString())
			assert.Equal(t, host, a["server.address"].AsString())
			assert.Equal(t, port, a["server.port"].AsInt64())
			if tc.size > 0 {
				assert.Equal(t, tc.size, a["db.operation.batch.size"].AsInt64())
			} else {
				assert.NotContains(t, a, attribute.Key("db.operation.batch.size"), "one command is not a batch")
			}
			kids := children[root.SpanContext().SpanID()]
			require.Len(t, kids, 1)
			ka := attrs(kids[0])
			assert.Equal(t, host, ka["server.address"].AsString())
			assert.Equal(t, port, ka["server.port"].AsInt64())
			assert.Equal(t, int64(1), ka["rbatch.attempt"].AsInt64())
			if tc.error != "" {
				assert.Equal(t, tc.error, a["error.type"].AsString())
				assert.Equal(t, tc.error, a["db.response.status_code"].AsString())
				assert.Equal(t, codes.Error, root.Status().Code)
				assert.Equal(t, tc.error, ka["db.response.status_code"].AsString())
				assert.Equal(t, codes.Error, kids[0].Status().Code)
			} else {
				assert.NotContains(t, a, attribute.Key("error.type"))
				assert.Equal(t, codes.Unset, root.Status().Code)
			}
		})
	}
}

// A Streaming batch is one span however many parts it was sent in, with
// one child for its node; its name and size are known at the end.
func TestStreamingBatchSpan(t *testing.T) {
	in := newInstrumented(t, srv.Addr)
	b := in.c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	for i := range 200000 {
		b.Bucket("ot:st" + strconv.Itoa(i%100)).SetAsync(i)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Nodes, 1)
	roots, children := in.batches()
	require.Len(t, roots, 1)
	a := attrs(roots[0])
	assert.Equal(t, "PIPELINE SET", roots[0].Name(), "every command is SET")
	assert.Equal(t, "PIPELINE SET", a["db.operation.name"].AsString())
	assert.Equal(t, int64(200000), a["db.operation.batch.size"].AsInt64())
	kids := children[roots[0].SpanContext().SpanID()]
	require.Len(t, kids, 1, "one child for the node, however many parts")
	ka := attrs(kids[0])
	assert.Equal(t, "PIPELINE SET", kids[0].Name())
	assert.Equal(t, int64(200000), ka["db.operation.batch.size"].AsInt64())
	assert.Equal(t, int64(1), ka["rbatch.attempt"].AsInt64())
	assert.False(t, kids[0].EndTime().Before(kids[0].StartTime()))
	assert.False(t, roots[0].EndTime().Before(kids[0].EndTime()), "the node's span ends within the batch's")
}

// A stream filled slowly goes a part per command; it still has one child
// span per node, never one per command, and mixed commands name it
// PIPELINE.
func TestStreamingSlowFillSpans(t *testing.T) {
	cl := redistest.NewCluster(t)
	in := newInstrumented(t, cl.Addrs()[0])
	b := in.c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	const n = 40
	for i := range n {
		if i%2 == 0 {
			b.Bucket("ot:slow" + strconv.Itoa(i)).SetAsync(i)
		} else {
			b.AtomicLong("ot:slow" + strconv.Itoa(i)).IncrementAndGetAsync()
		}
		time.Sleep(2 * time.Millisecond)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	roots, children := in.batches()
	require.Len(t, roots, 1)
	assert.Equal(t, "PIPELINE", roots[0].Name(), "the commands differ")
	assert.Equal(t, int64(n), attrs(roots[0])["db.operation.batch.size"].AsInt64())
	kids := children[roots[0].SpanContext().SpanID()]
	assert.Len(t, kids, len(res.Nodes), "a child per node")
	total := int64(0)
	for _, k := range kids {
		total += attrs(k)["db.operation.batch.size"].AsInt64()
		assert.Equal(t, "PIPELINE", k.Name())
	}
	assert.Equal(t, int64(n), total, "the nodes' children cover every command")
	assert.Len(t, in.spans.Ended(), 1+len(res.Nodes))
}

// A cluster batch has one child span per primary it ran on, each with
// that primary's address; its own is the configured seed's.
func TestClusterBatchSpans(t *testing.T) {
	cl := redistest.NewCluster(t)
	in := newInstrumented(t, cl.Addrs()[0])
	b := in.c.NewBatch()
	for i := range 300 {
		b.AtomicLong("ot:c" + strconv.Itoa(i)).IncrementAndGetAsync()
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Nodes, 3)

	roots, children := in.batches()
	require.Len(t, roots, 1)
	a := attrs(roots[0])
	assert.Equal(t, "PIPELINE INCR", roots[0].Name())
	assert.Equal(t, int64(300), a["db.operation.batch.size"].AsInt64())
	// The address is the configured one the client connected through, as
	// OpenTelemetry asks; the nodes are the children's.
	host, port, _ := net.SplitHostPort(cl.Addrs()[0])
	assert.Equal(t, host, a["server.address"].AsString())
	assert.Equal(t, port, strconv.FormatInt(a["server.port"].AsInt64(), 10))
	kids := children[roots[0].SpanContext().SpanID()]
	require.Len(t, kids, 3)
	seen := map[string]int64{}
	for _, k := range kids {
		ka := attrs(k)
		seen[ka["server.address"].AsString()+":"+strconv.FormatInt(ka["server.port"].AsInt64(), 10)] = ka["db.operation.batch.size"].AsInt64()
	}
	for _, nr := range res.Nodes {
		assert.Equal(t, int64(nr.Commands), seen[nr.Addr], "the span of %s", nr.Addr)
	}
}

// A MOVED that rbatch followed is a redirect, not a failure: the batch
// succeeds, and no span of it says Error, in a pipeline and in a
// transaction (redirected whole); the old owner's span has the event.
func TestFollowedMovedIsNoError(t *testing.T) {
	cl := redistest.NewCluster(t)
	in := newInstrumented(t, cl.Addrs()[0])
	const key = "{otmv}k"
	slot := int(cl.Nodes()[0].MustDo(t, "CLUSTER", "KEYSLOT", key).(int64))
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic} {
		b := in.c.NewBatch() // the slot map is loaded: the next batch goes where it says
		b.Bucket(key).SetAsync("v")
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		from := cl.OwnerOf(t, slot)
		to := cl.Primaries[0]
		if to == from {
			to = cl.Primaries[1]
		}
		cl.MigrateSlot(t, slot, from, to)
		in.spans.Reset()

		b = in.c.NewBatch(rbatch.WithMode(mode))
		b.Bucket(key).GetAsync()
		b.Bucket(key).GetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err, mode)
		moved := 0
		for _, nr := range res.Nodes {
			moved += nr.Moved
		}
		require.Equal(t, 2, moved, "%s: the old owner redirected both", mode)
		redirects := 0
		for _, sp := range in.spans.Ended() {
			assert.NotEqual(t, codes.Error, sp.Status().Code, "%s: span %q: %v", mode, sp.Name(), sp.Status())
			_, failed := attrs(sp)["error.type"]
			assert.False(t, failed, "%s: span %q has an error type", mode, sp.Name())
			for _, e := range sp.Events() {
				if e.Name == "redirect" {
					redirects++
				}
			}
		}
		assert.Equal(t, 1, redirects, mode)
		assert.Len(t, in.spans.Ended(), 3, "%s: the batch, the old owner's round, the new owner's", mode)
	}
}

// Every batch records its duration, with the operation and the error.
func TestDurationHistogram(t *testing.T) {
	in := newInstrumented(t, srv.Addr)
	for i := range 4 {
		b := in.c.NewBatch()
		b.Bucket("ot:h").SetAsync(i)
		b.Bucket("ot:h").GetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
	}
	b := in.c.NewBatch()
	b.Bucket("ot:hs").SetAsync("x")
	b.List("ot:hs").AddAsync("y")
	_, err := b.Execute(context.Background())
	require.Error(t, err)

	var rm metricdata.ResourceMetrics
	require.NoError(t, in.reader.Collect(context.Background(), &rm))
	var points []metricdata.HistogramDataPoint[float64]
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "db.client.operation.duration" {
				assert.Equal(t, "s", m.Unit)
				points = append(points, m.Data.(metricdata.Histogram[float64]).DataPoints...)
			}
		}
	}
	counts := map[string]uint64{}
	for _, p := range points {
		op, _ := p.Attributes.Value("db.operation.name")
		et, _ := p.Attributes.Value("error.type")
		counts[op.AsString()+"/"+et.AsString()] += p.Count
		assert.Positive(t, p.Sum)
	}
	assert.Equal(t, map[string]uint64{"PIPELINE/": 4, "PIPELINE/WRONGTYPE": 1}, counts)
}

// startAttrs is a sampler that keeps every span and notes the attributes
// each had when it started.
type startAttrs struct {
	mu   sync.Mutex
	seen map[string][]attribute.KeyValue
}

func (s *startAttrs) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[p.Name] = p.Attributes
	return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
}

func (s *startAttrs) Description() string { return "startAttrs" }

// A batch span has the server's address from its start, for samplers; a
// transaction discarded by Redis marks its node span failed (tx_aborted);
// a discarded stream says so.
func TestSpanStartAndFailures(t *testing.T) {
	sampler := &startAttrs{seen: map[string][]attribute.KeyValue{}}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sampler))
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.AddHook(rbatchotel.NewHook(rbatchotel.WithTracerProvider(tp)))

	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Bucket("ot:tx").SetAsync("v")
	b.Do("NOSUCHCOMMAND") // a queue-time error: EXECABORT
	_, err = b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrTxAborted)
	host, _, _ := net.SplitHostPort(srv.Addr)
	assert.Contains(t, sampler.seen["MULTI"], attribute.String("server.address", host), "known when the span starts")

	b = c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	b.Bucket("ot:st").SetAsync("v")
	require.NoError(t, b.Discard(context.Background()))

	var batch, group, stream sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		switch {
		case s.Name() == "MULTI" && !s.Parent().IsValid():
			batch = s
		case s.Name() == "MULTI":
			group = s
		case s.Name() == "SET" && !s.Parent().IsValid(): // one command is named for it
			stream = s
		}
	}
	require.NotNil(t, batch)
	require.NotNil(t, group)
	require.NotNil(t, stream)
	for _, s := range []sdktrace.ReadOnlySpan{batch, group} {
		assert.Equal(t, codes.Error, s.Status().Code, s.Name())
		assert.Equal(t, "tx_aborted", attrs(s)["error.type"].AsString())
	}
	assert.Equal(t, "ERR", attrs(group)["db.response.status_code"].AsString(), "the error reply that aborted it")
	assert.Equal(t, "discarded", attrs(stream)["error.type"].AsString())
}
