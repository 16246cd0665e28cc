package rbatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// CLIENT REPLY is refused whatever type carries the subcommand: a real
// server would stop replying, stalling the batch.
func TestForbiddenSubcommandWhateverItsType(t *testing.T) {
	type word string
	for name, sub := range map[string]any{"[]byte": []byte("REPLY"), "named string": word("reply")} {
		t.Run(name, func(t *testing.T) {
			f := redistest.NewFake(t, plausible)
			c, hs := fakeClient(t, f)
			b := c.NewBatch(rbatch.WithResponseTimeout(200 * time.Millisecond))
			b.Do("CLIENT", sub, "OFF")
			_, err := b.Execute(context.Background())
			require.Error(t, err, "CLIENT REPLY OFF must be refused whatever the argument's type")
			assert.ErrorIs(t, err, rbatch.ErrNotSent)
			assert.Empty(t, f.Commands()[hs:], "nothing may be sent")
		})
	}
}

// A script that does not compile fails its future with the compile error,
// not with the NOSCRIPT its EVALSHA then gets.
func TestScriptCompileErrorReachesItsFuture(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	eval := b.Script().EvalAsync("return +", nil)
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	_, ferr := eval.Get()
	require.Error(t, ferr)
	assert.NotContains(t, ferr.Error(), "NOSCRIPT")
	assert.Contains(t, ferr.Error(), "compiling script")
}
