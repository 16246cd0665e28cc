package rbatchotel

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/rbatch/rbatch"
)

// streamKey carries a Streaming batch's node spans in its context.
type streamKey struct{}

// streamNodes are a Streaming batch's node spans. A stream is sent in
// parts as it is filled — one per command when it is filled slowly — so a
// span per part and node would come close to a span per command: instead
// each node has one span, from its first part to its last, ended with the
// batch. Parts of a stream run two at a time, hence the lock.
type streamNodes struct {
	mu    sync.Mutex
	spans map[string]*streamNode
	order []*streamNode // in the order the nodes were first sent to
}

// streamNode is one node's span and what its parts added up to.
type streamNode struct {
	span     trace.Span
	commands int
	attempt  int // the highest round: 1 unless redirected or retried
	last     time.Time
}

// group starts g's node span if it is the node's first part, and returns
// ctx with the node's span in it.
func (sn *streamNodes) group(ctx context.Context, tracer trace.Tracer, op string, g rbatch.GroupInfo) context.Context {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	n := sn.spans[g.Addr]
	if n == nil {
		n = &streamNode{}
		attrs := append([]attribute.KeyValue{systemRedis, keyOperation.String(op)}, serverAttrs(g.Addr)...)
		_, n.span = tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(g.Start), trace.WithAttributes(attrs...))
		sn.spans[g.Addr] = n
		sn.order = append(sn.order, n)
	}
	n.commands += g.Commands
	n.attempt = max(n.attempt, g.Attempt)
	return trace.ContextWithSpan(ctx, n.span)
}

// groupEnd records how one of a node's parts ended on the node's span.
func (sn *streamNodes) groupEnd(g rbatch.GroupInfo, r rbatch.GroupResult) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	n := sn.spans[g.Addr]
	if n == nil {
		return
	}
	groupOutcome(n.span, g, r)
	if end := g.Start.Add(r.Duration); end.After(n.last) {
		n.last = end
	}
}

// end names and ends every node span, each at its last part's end.
func (sn *streamNodes) end(op string) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for _, n := range sn.order {
		n.span.SetName(op)
		attrs := []attribute.KeyValue{keyOperation.String(op), keyAttempt.Int(n.attempt)}
		if kv, ok := batchSize(n.commands); ok {
			attrs = append(attrs, kv)
		}
		n.span.SetAttributes(attrs...)
		var opts []trace.SpanEndOption
		if !n.last.IsZero() {
			opts = append(opts, trace.WithTimestamp(n.last))
		}
		n.span.End(opts...)
	}
}
