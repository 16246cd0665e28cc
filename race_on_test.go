//go:build race

package rbatch_test

// raceEnabled reports a -race build: instrumented code runs several times
// slower, so wall-clock bounds are widened (make test also runs the timed
// tests without -race).
const raceEnabled = true
