package rbatchotel_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/rbatchotel"
)

// BenchmarkOverhead1MSADD loads 1M SADD in one batch on a client without
// hooks and on one with the OpenTelemetry hook (a real SDK recording every
// span, a manual metric reader), taking turns, and reports how much slower
// the instrumented batches were, in percent of the plain ones' total time.
//
//	cd rbatchotel && go test -run '^$' -bench Overhead -benchtime 20x
func BenchmarkOverhead1MSADD(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	plain, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{srv.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	traced, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{srv.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer traced.Close()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	traced.AddHook(rbatchotel.NewHook(rbatchotel.WithTracerProvider(tp), rbatchotel.WithMeterProvider(mp)))

	members := make([]string, n)
	for i := range members {
		members[i] = strconv.Itoa(i)
	}
	load := func(c *rbatch.Client, key string) time.Duration {
		srv.Call("DEL", key)
		start := time.Now()
		bt := c.NewBatch()
		s := bt.Set(key)
		for _, m := range members {
			s.AddAsync(m)
		}
		if _, err := bt.Execute(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var without, with time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 { // alternate which goes first
			without += load(plain, "ot:bench:plain")
			with += load(traced, "ot:bench:traced")
		} else {
			with += load(traced, "ot:bench:traced")
			without += load(plain, "ot:bench:plain")
		}
	}
	b.StopTimer()
	srv.Call("DEL", "ot:bench:plain", "ot:bench:traced")
	b.ReportMetric(float64(without.Milliseconds())/float64(b.N), "ms/batch-plain")
	b.ReportMetric(float64(with.Milliseconds())/float64(b.N), "ms/batch-otel")
	b.ReportMetric(100*(float64(with)-float64(without))/float64(without), "%-overhead")
}
