// Package ctxerr says why a context ended, as rbatch reports it.
package ctxerr

import (
	"context"
	"errors"
	"fmt"
)

// Of is why ctx ended (nil: it has not). It is ctx.Err(), so that
// errors.Is finds context.Canceled or context.DeadlineExceeded, wrapping
// the cause given with context.WithCancelCause or WithTimeoutCause as well
// when there is one. A cause that is itself a context's end (a context
// ended because another did, with that one's cause) stands alone.
func Of(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	cause := context.Cause(ctx)
	switch {
	case cause == nil || cause == err:
		return err
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		return cause
	}
	return fmt.Errorf("%w: %w", err, cause)
}
