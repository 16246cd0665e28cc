// Package rbatchotel traces and measures rbatch batches with OpenTelemetry.
//
//	client.AddHook(rbatchotel.NewHook(
//		rbatchotel.WithTracerProvider(tp),
//		rbatchotel.WithMeterProvider(mp),
//	))
//
// Each batch is one span, following OpenTelemetry's conventions for Redis:
// named PIPELINE (MULTI for the atomic modes, PIPELINE SET when every
// command is SET, the command's own name for a one-command pipeline), with
// db.system.name "redis", db.operation.name, db.operation.batch.size, and
// server.address and server.port: the configured address the client
// connected through, set when the span starts (for a NewClientFromPool
// client, the node that ran the batch). Each node group is a child span
// with the node's address and its commands; a batch whose commands were
// redirected or retried has a child per round. There is never a span per
// command: a million-command InMemory batch costs two spans. A Streaming
// batch is sent in parts while it is filled (a part per command when it is
// filled slowly), yet it has one child span per node, from the node's
// first part to its last; its span starts when NewBatch makes it, as a
// child of WithContext's context (Execute comes later), and its name and
// size are known when it ends.
//
// A batch that failed sets error.type (the Redis error prefix, such as
// WRONGTYPE, or one of timeout, canceled, not_sent, unknown_outcome,
// tx_aborted, condition_failed, discarded, _OTHER) and, for an error reply,
// db.response.status_code; the span's status is Error. Every batch records
// its duration in the db.client.operation.duration histogram, in seconds.
//
// rbatchotel is a module of its own, so programs that use rbatch without
// OpenTelemetry do not download it.
package rbatchotel
