package resp

import (
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func reader(s string, size int) *Reader {
	return NewReader(strings.NewReader(s), size)
}

// The reader gives the values redigo gives for every RESP2 reply.
func TestReplyReaderValues(t *testing.T) {
	longErr := "ERR " + strings.Repeat("x", 100)
	cases := []struct {
		name string
		in   string
		want any
	}{
		{"OK", "+OK\r\n", "OK"},
		{"QUEUED", "+QUEUED\r\n", "QUEUED"},
		{"other status", "+Background saving started\r\n", "Background saving started"},
		{"error", "-ERR wrong\r\n", redis.Error("ERR wrong")},
		{"error longer than the buffer", "-" + longErr + "\r\n", redis.Error(longErr)},
		{"zero", ":0\r\n", int64(0)},
		{"negative", ":-42\r\n", int64(-42)},
		{"max", ":" + strconv.FormatInt(math.MaxInt64, 10) + "\r\n", int64(math.MaxInt64)},
		{"min", ":" + strconv.FormatInt(math.MinInt64, 10) + "\r\n", int64(math.MinInt64)},
		{"bulk", "$5\r\nhello\r\n", []byte("hello")},
		{"bulk with CRLF inside", "$4\r\na\r\nb\r\n", []byte("a\r\nb")},
		{"empty bulk", "$0\r\n\r\n", []byte{}},
		{"bulk longer than the buffer", "$100\r\n" + strings.Repeat("b", 100) + "\r\n", []byte(strings.Repeat("b", 100))},
		{"nil bulk", "$-1\r\n", nil},
		{"nil array", "*-1\r\n", nil},
		{"empty array", "*0\r\n", []any{}},
		{"EXEC reply", "*4\r\n:1\r\n-WRONGTYPE no\r\n$1\r\nv\r\n*2\r\n+OK\r\n$-1\r\n",
			[]any{int64(1), redis.Error("WRONGTYPE no"), []byte("v"), []any{"OK", nil}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := reader(tc.in+":7\r\n", 16) // a small buffer: lines and bulks cross its edge
			got, err := r.read()
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			next, err := r.read()
			require.NoError(t, err)
			assert.Equal(t, int64(7), next, "the reply was consumed to its end")
		})
	}
}

// A reply that is not RESP2 fails with a ProtocolError; a cut one with the
// transport's error.
func TestReplyReaderErrors(t *testing.T) {
	for _, in := range []string{
		"\r\n", "?what\r\n", "+OK\n", ":12a\r\n", ":\r\n", ":-\r\n",
		":9223372036854775808\r\n", ":-9223372036854775809\r\n", ":99999999999999999999\r\n",
		"$abc\r\n", "$-2\r\n", "$3\r\nabcde", "*x\r\n", "*1\r\n?\r\n",
	} {
		_, err := reader(in, 4096).read()
		var pe *ProtocolError
		assert.ErrorAs(t, err, &pe, "%q", in)
	}
	for _, in := range []string{"", "+OK", "$5\r\nab", "*2\r\n:1\r\n"} {
		_, err := reader(in, 4096).read()
		assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF), "%q: %v", in, err)
	}
}

// The statuses a batch reads by the million allocate nothing, nor do small
// integers.
func TestReplyReaderAllocs(t *testing.T) {
	in := strings.Repeat("+OK\r\n+QUEUED\r\n:1\r\n", 1000)
	r := reader(in, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		for range 3 {
			if _, err := r.read(); err != nil {
				r.br.Reset(strings.NewReader(in))
			}
		}
	})
	assert.Zero(t, allocs)
}
