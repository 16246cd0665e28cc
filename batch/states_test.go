package batch_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rbatch/rbatch/batch"
)

// Each way a group can end, and the state it leaves each command in.
func TestResultSpans(t *testing.T) {
	lost := errors.New("connection lost")
	atomic, skip := batch.Plan{Atomic: true}, batch.Plan{SkipResult: true}
	span := func(s batch.State, from, to int) batch.Span { return batch.Span{State: s, From: from, To: to} }
	cases := []struct {
		name   string
		r      batch.Result
		p      batch.Plan
		before bool
		want   []batch.Span
	}{
		{"all answered", batch.Result{Answered: 4, Sent: 4}, batch.Plan{}, false, []batch.Span{span(batch.Answered, 0, 4)}},
		{"lost mid-replies", batch.Result{Answered: 1, Sent: 3, Err: lost}, batch.Plan{}, false,
			[]batch.Span{span(batch.Answered, 0, 1), span(batch.Unknown, 1, 3), span(batch.NotSent, 3, 4)}},
		{"lost before writing", batch.Result{Err: lost}, batch.Plan{}, false, []batch.Span{span(batch.NotSent, 0, 4)}},
		{"transaction answered", batch.Result{Answered: 4, Sent: 4, ExecSent: true}, atomic, false, []batch.Span{span(batch.Answered, 0, 4)}},
		{"transaction lost before any command", batch.Result{Err: lost}, atomic, false, []batch.Span{span(batch.NotSent, 0, 4)}},
		{"transaction lost before EXEC", batch.Result{Sent: 2, Err: lost}, atomic, false, []batch.Span{span(batch.Aborted, 0, 4)}},
		{"Redis-side MULTI lost before EXEC", batch.Result{Err: lost}, atomic, true, []batch.Span{span(batch.Aborted, 0, 4)}},
		{"transaction lost after EXEC", batch.Result{Sent: 4, ExecSent: true, Err: lost}, atomic, false, []batch.Span{span(batch.Unknown, 0, 4)}},
		{"transaction discarded", batch.Result{Sent: 4, ExecSent: true, Aborted: &batch.AbortError{Index: 2, Cause: lost}}, atomic, false,
			[]batch.Span{span(batch.Aborted, 0, 4)}},
		{"MULTI refused", batch.Result{Answered: 4, Sent: 4, MultiRefused: lost}, atomic, false, []batch.Span{span(batch.Answered, 0, 4)}},
		{"replies skipped", batch.Result{Sent: 4, Skipped: true}, skip, false, []batch.Span{span(batch.Skipped, 0, 4)}},
		{"replies never turned back on", batch.Result{Sent: 3, Err: lost}, skip, false,
			[]batch.Span{span(batch.Unknown, 0, 3), span(batch.NotSent, 3, 4)}},
		{"skip-result transaction lost after EXEC", batch.Result{Sent: 4, ExecSent: true, Err: lost}, batch.Plan{Atomic: true, SkipResult: true}, false,
			[]batch.Span{span(batch.Unknown, 0, 4)}},
		{"skip-result transaction lost before EXEC", batch.Result{Sent: 4, Err: lost}, batch.Plan{Atomic: true, SkipResult: true}, false,
			[]batch.Span{span(batch.Aborted, 0, 4)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.r.Spans(nil, 4, tc.p, tc.before))
		})
	}
}
