package pool_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every connection a test dials is closed by its end, and no pool leaves a
// goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
