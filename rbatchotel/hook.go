package rbatchotel

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/rbatch/rbatch"
)

// scope names the instrumentation in the spans and metrics it makes.
const scope = "github.com/rbatch/rbatch/rbatchotel"

// The attribute keys of OpenTelemetry's database conventions.
const (
	keySystem     = attribute.Key("db.system.name")
	keyOperation  = attribute.Key("db.operation.name")
	keyBatchSize  = attribute.Key("db.operation.batch.size")
	keyStatusCode = attribute.Key("db.response.status_code")
	keyErrorType  = attribute.Key("error.type")
	keyAddress    = attribute.Key("server.address")
	keyPort       = attribute.Key("server.port")
	// rbatch's own, on the node spans.
	keyAttempt = attribute.Key("rbatch.attempt")
)

var systemRedis = keySystem.String("redis")

// durationBounds are the histogram buckets the conventions recommend, in
// seconds.
var durationBounds = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// Option configures NewHook.
type Option func(*config)

type config struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// WithTracerProvider sets where spans go (default: otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets where the duration histogram goes (default:
// otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// hook is the rbatch.Hook NewHook returns.
type hook struct {
	rbatch.NopHook
	tracer   trace.Tracer
	duration metric.Float64Histogram
}

// NewHook returns a hook that makes a span per batch, a child span per node
// group and records each batch's duration. Install it with Client.AddHook.
func NewHook(opts ...Option) rbatch.Hook {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.tp == nil {
		cfg.tp = otel.GetTracerProvider()
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	h := &hook{tracer: cfg.tp.Tracer(scope)}
	d, err := cfg.mp.Meter(scope).Float64Histogram("db.client.operation.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of database client operations."),
		metric.WithExplicitBucketBoundaries(durationBounds...))
	if err != nil {
		otel.Handle(err)
	}
	h.duration = d
	return h
}

// operation is the batch's db.operation.name, which is also its spans' name.
func operation(b rbatch.BatchInfo) string {
	switch m := b.Options.Mode; {
	case m == rbatch.InMemoryAtomic || m == rbatch.RedisReadAtomic || m == rbatch.RedisWriteAtomic:
		return "MULTI"
	case b.Commands == 1 && b.Command != "":
		return b.Command // one command is not a batch
	case b.Command != "":
		return "PIPELINE " + b.Command
	}
	return "PIPELINE"
}

// batchSize is db.operation.batch.size, set only for a batch of two or
// more operations (or none).
func batchSize(n int) (attribute.KeyValue, bool) {
	return keyBatchSize.Int(n), n != 1
}

func (h *hook) BatchStart(ctx context.Context, b rbatch.BatchInfo) context.Context {
	op := operation(b)
	attrs := []attribute.KeyValue{systemRedis, keyOperation.String(op)}
	if kv, ok := batchSize(b.Commands); ok && b.Options.Mode != rbatch.Streaming {
		attrs = append(attrs, kv)
	}
	if b.Addr != "" { // known at the start, for samplers to see
		attrs = append(attrs, serverAttrs(b.Addr)...)
	}
	ctx, _ = h.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(b.Start), trace.WithAttributes(attrs...))
	if b.Options.Mode == rbatch.Streaming {
		ctx = context.WithValue(ctx, streamKey{}, &streamNodes{spans: map[string]*streamNode{}})
	}
	return context.WithValue(ctx, opKey{}, op)
}

// opKey carries the batch's operation name to its node spans.
type opKey struct{}

func (h *hook) BatchEnd(ctx context.Context, b rbatch.BatchInfo, res *rbatch.BatchResult, err error) {
	span := trace.SpanFromContext(ctx)
	op := operation(b)
	if sn, ok := ctx.Value(streamKey{}).(*streamNodes); ok {
		// A stream's commands are known now: its spans get their name.
		span.SetName(op)
		sn.end(op)
	}
	attrs := []attribute.KeyValue{systemRedis, keyOperation.String(op)}
	switch {
	case b.Addr != "":
		attrs = append(attrs, serverAttrs(b.Addr)...)
	case res != nil && len(res.Nodes) == 1: // a redigo pool's client: the node that ran it
		attrs = append(attrs, serverAttrs(res.Nodes[0].Addr)...)
	}
	if res != nil && b.Options.Mode == rbatch.Streaming {
		if kv, ok := batchSize(res.Counts.Total()); ok { // known once it ends
			span.SetAttributes(kv)
		}
	}
	if err != nil {
		attrs = append(attrs, errorAttrs(err)...)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attrs...)
	span.End()
	if h.duration != nil {
		h.duration.Record(ctx, time.Since(b.Start).Seconds(), metric.WithAttributes(attrs...))
	}
}

func (h *hook) GroupStart(ctx context.Context, g rbatch.GroupInfo) context.Context {
	op, _ := ctx.Value(opKey{}).(string)
	if sn, ok := ctx.Value(streamKey{}).(*streamNodes); ok {
		return sn.group(ctx, h.tracer, op, g)
	}
	attrs := append([]attribute.KeyValue{systemRedis, keyOperation.String(op), keyAttempt.Int(g.Attempt)},
		serverAttrs(g.Addr)...)
	if kv, ok := batchSize(g.Commands); ok {
		attrs = append(attrs, kv)
	}
	ctx, _ = h.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(g.Start), trace.WithAttributes(attrs...))
	return ctx
}

func (h *hook) GroupEnd(ctx context.Context, g rbatch.GroupInfo, r rbatch.GroupResult) {
	if sn, ok := ctx.Value(streamKey{}).(*streamNodes); ok {
		sn.groupEnd(g, r)
		return
	}
	span := trace.SpanFromContext(ctx)
	groupOutcome(span, g, r)
	span.End(trace.WithTimestamp(g.Start.Add(r.Duration)))
}

// groupOutcome sets on span how a node group ended.
func groupOutcome(span trace.Span, g rbatch.GroupInfo, r rbatch.GroupResult) {
	if r.Addr != "" && r.Addr != g.Addr {
		span.SetAttributes(serverAttrs(r.Addr)...)
	}
	switch {
	case r.Err != nil:
		span.SetAttributes(errorAttrs(r.Err)...)
		span.SetStatus(codes.Error, r.Err.Error())
	case r.Counts.Aborted > 0: // the transaction was discarded
		span.SetAttributes(keyErrorType.String("tx_aborted"))
		if r.ServerError != nil { // the error reply that aborted it
			span.SetAttributes(keyStatusCode.String(r.ServerError.Prefix()))
		}
		span.SetStatus(codes.Error, "transaction aborted")
	case r.ServerError != nil:
		span.SetAttributes(errorAttrs(r.ServerError)...)
		span.SetStatus(codes.Error, r.ServerError.Error())
	}
}

func (h *hook) Redirect(ctx context.Context, r rbatch.RedirectInfo) {
	trace.SpanFromContext(ctx).AddEvent("redirect", trace.WithAttributes(
		attribute.String("rbatch.redirect", r.Kind), attribute.String("rbatch.redirect.to", r.To),
		attribute.Int("rbatch.commands", r.Commands)))
}

func (h *hook) Retry(ctx context.Context, r rbatch.RetryInfo) {
	trace.SpanFromContext(ctx).AddEvent("retry", trace.WithAttributes(
		attribute.Int("rbatch.attempt", r.Attempt), attribute.Int("rbatch.commands", r.Commands)))
}

func (h *hook) ConnWait(ctx context.Context, w rbatch.ConnWaitInfo) {
	trace.SpanFromContext(ctx).AddEvent("connection wait", trace.WithAttributes(
		attribute.String("server.address", w.Addr), attribute.Float64("rbatch.wait.seconds", w.Duration.Seconds())))
}

// serverAttrs are server.address and server.port of addr ("host:port").
func serverAttrs(addr string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []attribute.KeyValue{keyAddress.String(addr)}
	}
	attrs := []attribute.KeyValue{keyAddress.String(host)}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, keyPort.Int(p))
	}
	return attrs
}

// errorAttrs are error.type, and db.response.status_code for an error reply.
func errorAttrs(err error) []attribute.KeyValue {
	var re *rbatch.RedisError
	switch {
	case errors.Is(err, rbatch.ErrTxAborted) && errors.As(err, &re):
		// Discarded for an error reply (EXECABORT after a queue-time
		// error): nothing was applied, which the reply's prefix alone
		// would not say.
		return []attribute.KeyValue{keyErrorType.String("tx_aborted"), keyStatusCode.String(re.Prefix())}
	case errors.As(err, &re):
		return []attribute.KeyValue{keyErrorType.String(re.Prefix()), keyStatusCode.String(re.Prefix())}
	}
	return []attribute.KeyValue{keyErrorType.String(errorType(err))}
}

// errorType names a failure that is not an error reply, in few words.
func errorType(err error) string {
	switch {
	case errors.Is(err, rbatch.ErrDiscarded) && !errors.Is(err, rbatch.ErrUnknownOutcome):
		return "discarded" // (a discarded stream's unwritten commands wrap its cancel too)
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, rbatch.ErrConditionFailed):
		return "condition_failed"
	case errors.Is(err, rbatch.ErrTxAborted):
		return "tx_aborted"
	case errors.Is(err, rbatch.ErrUnknownOutcome):
		return "unknown_outcome"
	case errors.Is(err, rbatch.ErrNotSent):
		return "not_sent"
	case errors.Is(err, rbatch.ErrDiscarded):
		return "discarded"
	}
	return "_OTHER"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
