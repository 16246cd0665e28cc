//go:build !race

package rbatch_test

const raceEnabled = false
