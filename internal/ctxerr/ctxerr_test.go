package ctxerr_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

func TestOf(t *testing.T) {
	mine := errors.New("shutting down")
	live := context.Background()
	assert.NoError(t, ctxerr.Of(live))

	plain, cancel := context.WithCancel(live)
	cancel()
	assert.Equal(t, context.Canceled, ctxerr.Of(plain))

	withCause, cancelCause := context.WithCancelCause(live)
	cancelCause(mine)
	err := ctxerr.Of(withCause)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, mine)

	timedOut, stop := context.WithTimeoutCause(live, time.Nanosecond, mine)
	defer stop()
	<-timedOut.Done()
	err = ctxerr.Of(timedOut)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, mine)

	// Ended because another context did: that one's end, alone.
	follower, cancelFollower := context.WithCancelCause(live)
	cancelFollower(context.DeadlineExceeded)
	err = ctxerr.Of(follower)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, context.Canceled)
}
