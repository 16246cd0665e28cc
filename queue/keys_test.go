package queue

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// EachKey finds every key of the commands whose layout it knows, and only
// their keys: options, counts, values, scripts and IDs are not keys.
func TestEachKey(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		keys []string
	}{
		{"DEL a b c", []string{"a", "b", "c"}},
		{"MSET a 1 b 2", []string{"a", "b"}},
		{"MSETNX a 1 b 2", []string{"a", "b"}},
		{"RENAME a b", []string{"a", "b"}},
		{"LMOVE a b LEFT RIGHT", []string{"a", "b"}},
		{"COPY a b DB 0 REPLACE", []string{"a", "b"}},
		{"SINTERSTORE d a b", []string{"d", "a", "b"}},
		{"PFCOUNT a b", []string{"a", "b"}},
		{"SINTERCARD 2 a b LIMIT 3", []string{"a", "b"}},
		{"EVAL s 2 a b x y", []string{"a", "b"}},
		{"BLMPOP 0 2 a b LEFT", []string{"a", "b"}},
		{"ZUNIONSTORE d 2 a b WEIGHTS 1 2", []string{"d", "a", "b"}},
		{"BITOP AND d a b", []string{"d", "a", "b"}},
		{"BLPOP a b 5", []string{"a", "b"}},
		{"XREAD COUNT 2 STREAMS a b 0 0", []string{"a", "b"}},
		{"XREADGROUP GROUP STREAMS c COUNT 1 NOACK STREAMS a 0", []string{"a"}},
		{"SORT a BY STORE ALPHA STORE d", []string{"a", "d"}},
		{"SORT a LIMIT 0 10", []string{"a"}},
		{"GEORADIUS a 1 2 3 km STOREDIST d", []string{"a", "d"}},
		{"GEORADIUSBYMEMBER a STORE 3 km COUNT 2 ANY STORE d", []string{"a", "d"}},
		{"EVAL s 2 a", []string{"a"}}, // fewer keys than counted: what is there
		{"EVAL s many a", nil},        // not a count: Redis refuses it
		{"XREAD COUNT 1", nil},
	} {
		parts := strings.Fields(tc.cmd)
		name := parts[0]
		args := make([][]byte, 0, len(parts)-1)
		for _, p := range parts[1:] {
			args = append(args, []byte(p))
		}
		assert.True(t, KeysKnown([]byte(name), FlagsOf(name)), tc.cmd)
		var got []string
		err := EachKey([]byte(name), FlagsOf(name), args, func(k []byte) error {
			got = append(got, string(k))
			return nil
		})
		assert.NoError(t, err, tc.cmd)
		assert.Equal(t, tc.keys, got, tc.cmd)
	}
	assert.False(t, KeysKnown([]byte("SET"), FlagsOf("SET")), "one key: the routing key")

	stop := errors.New("stop")
	n := 0
	err := EachKey([]byte("DEL"), MultiKey, [][]byte{[]byte("a"), []byte("b")}, func([]byte) error { n++; return stop })
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, n, "EachKey stops at fn's first error")
}
