package batch_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Run and Session start a writer goroutine per group: none may outlive it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
