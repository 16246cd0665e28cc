package rbatch

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/internal/resp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodeCase is one reply given to a decoder: the value wanted, or the error
// wanted (errIs for a sentinel, errHas for a substring of the message).
type decodeCase struct {
	name   string
	reply  any
	want   any
	errIs  error
	errHas string
}

// runDecoder checks dec against cases; want is compared after dec's result is
// converted to any.
func runDecoder[T any](t *testing.T, dec func(any) (T, error), cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dec(tc.reply)
			switch {
			case tc.errIs != nil:
				require.ErrorIs(t, err, tc.errIs)
			case tc.errHas != "":
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.errHas)
				assert.True(t, strings.HasPrefix(err.Error(), "rbatch: "), err.Error())
				assert.NotErrorIs(t, err, ErrNil)
			default:
				require.NoError(t, err)
			}
			if tc.errHas == "" {
				assert.Equal(t, tc.want, any(got))
			}
		})
	}
}

// wrongShapes are replies no scalar decoder accepts.
var wrongShapes = []struct {
	name  string
	reply any
}{
	{"array", []any{[]byte("a")}},
	{"empty array", []any{}},
	{"redis.Error", redis.Error("ERR boom")},
	{"float64", 1.5},
	{"bool", true},
	{"int", 3},
}

func withWrongShapes(cases []decodeCase, want string, skip ...string) []decodeCase {
	for _, w := range wrongShapes {
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == w.name
		}
		if !skipped {
			cases = append(cases, decodeCase{name: "wrong " + w.name, reply: w.reply, errHas: want})
		}
	}
	return cases
}

func TestDecodeInt64(t *testing.T) {
	runDecoder(t, decodeInt64, withWrongShapes([]decodeCase{
		{name: "int64", reply: int64(42), want: int64(42)},
		{name: "negative", reply: int64(-7), want: int64(-7)},
		{name: "max", reply: int64(math.MaxInt64), want: int64(math.MaxInt64)},
		{name: "bulk", reply: []byte("123"), want: int64(123)},
		{name: "bulk negative", reply: []byte("-5"), want: int64(-5)},
		{name: "nil", reply: nil, want: int64(0), errIs: ErrNil},
		{name: "bulk not a number", reply: []byte("abc"), errHas: `reply "abc" is not an integer`},
		{name: "bulk float", reply: []byte("1.5"), errHas: "not an integer"},
		{name: "bulk overflow", reply: []byte("9223372036854775808"), errHas: "not an integer"},
		{name: "empty bulk", reply: []byte{}, errHas: "not an integer"},
		{name: "status", reply: "OK", errHas: "unexpected reply string for an integer"},
	}, "for an integer"))
}

func TestDecodeFloat(t *testing.T) {
	runDecoder(t, decodeFloat, withWrongShapes([]decodeCase{
		{name: "bulk", reply: []byte("1.5"), want: 1.5},
		{name: "bulk integral", reply: []byte("3"), want: 3.0},
		{name: "bulk exponent", reply: []byte("1e+21"), want: 1e21},
		{name: "bulk inf", reply: []byte("inf"), want: math.Inf(1)},
		{name: "bulk -inf", reply: []byte("-inf"), want: math.Inf(-1)},
		{name: "int64", reply: int64(-2), want: -2.0},
		{name: "nil", reply: nil, want: 0.0, errIs: ErrNil},
		{name: "bulk not a number", reply: []byte("x1"), errHas: `reply "x1" is not a number`},
		{name: "empty bulk", reply: []byte{}, errHas: "not a number"},
		{name: "status", reply: "OK", errHas: "unexpected reply string for a number"},
	}, "for a number"))
}

func TestDecodeString(t *testing.T) {
	runDecoder(t, decodeString, withWrongShapes([]decodeCase{
		{name: "bulk", reply: []byte("v"), want: "v"},
		{name: "empty bulk", reply: []byte{}, want: ""},
		{name: "binary bulk", reply: []byte{0, 0xff, '\r', '\n'}, want: "\x00\xff\r\n"},
		{name: "status", reply: "OK", want: "OK"},
		{name: "int64", reply: int64(-12), want: "-12"},
		{name: "nil", reply: nil, want: "", errIs: ErrNil},
	}, "for a string"))
}

func TestDecodeOK(t *testing.T) {
	runDecoder(t, decodeOK, withWrongShapes([]decodeCase{
		{name: "OK", reply: "OK", want: struct{}{}},
		{name: "nil", reply: nil, want: struct{}{}, errIs: ErrNil},
		{name: "other status", reply: "QUEUED", errHas: "unexpected reply string for OK"},
		{name: "bulk OK", reply: []byte("OK"), errHas: "unexpected reply []uint8 for OK"},
		{name: "int64", reply: int64(1), errHas: "unexpected reply int64 for OK"},
	}, "for OK"))
}

func TestDecodePositive(t *testing.T) {
	runDecoder(t, decodePositive, withWrongShapes([]decodeCase{
		{name: "one", reply: int64(1), want: true},
		{name: "many", reply: int64(5), want: true},
		{name: "zero", reply: int64(0), want: false},
		{name: "negative", reply: int64(-1), want: false},
		{name: "bulk", reply: []byte("2"), want: true},
		{name: "nil", reply: nil, want: false, errIs: ErrNil},
		{name: "status", reply: "OK", errHas: "for an integer"},
		{name: "bulk not a number", reply: []byte("yes"), errHas: "not an integer"},
	}, "for an integer"))
}

func TestDecodeSetIf(t *testing.T) {
	runDecoder(t, decodeSetIf, withWrongShapes([]decodeCase{
		{name: "OK", reply: "OK", want: true},
		{name: "nil", reply: nil, want: false},
		{name: "bulk OK", reply: []byte("OK"), errHas: "unexpected reply []uint8 for OK or nil"},
		{name: "int64", reply: int64(1), errHas: "for OK or nil"},
	}, "for OK or nil"))
}

func TestDecodeStrings(t *testing.T) {
	runDecoder(t, decodeStrings, []decodeCase{
		{name: "bulks", reply: []any{[]byte("a"), []byte("b")}, want: []string{"a", "b"}},
		{name: "empty", reply: []any{}, want: []string{}},
		{name: "nil element", reply: []any{[]byte("a"), nil, []byte("c")}, want: []string{"a", "", "c"}},
		{name: "mixed scalars", reply: []any{"st", int64(3), []byte("b")}, want: []string{"st", "3", "b"}},
		{name: "nil", reply: nil, want: []string(nil), errIs: ErrNil},
		{name: "nested array", reply: []any{[]byte("a"), []any{[]byte("x")}}, errHas: "unexpected reply []interface {} for a string"},
		{name: "error element", reply: []any{redis.Error("ERR inner")}, errHas: "server error: ERR inner"},
		{name: "bulk", reply: []byte("a"), errHas: "unexpected reply []uint8 for an array"},
		{name: "status", reply: "OK", errHas: "for an array"},
		{name: "int64", reply: int64(1), errHas: "for an array"},
		{name: "redis.Error", reply: redis.Error("ERR x"), errHas: "for an array"},
	})
}

func TestDecodeStringMap(t *testing.T) {
	runDecoder(t, decodeStringMap, []decodeCase{
		{name: "pairs", reply: []any{[]byte("f1"), []byte("v1"), []byte("f2"), []byte("v2")},
			want: map[string]string{"f1": "v1", "f2": "v2"}},
		{name: "empty", reply: []any{}, want: map[string]string{}},
		{name: "repeated field keeps the last", reply: []any{[]byte("f"), []byte("1"), []byte("f"), []byte("2")},
			want: map[string]string{"f": "2"}},
		{name: "integer value", reply: []any{[]byte("n"), int64(5)}, want: map[string]string{"n": "5"}},
		{name: "nil", reply: nil, want: map[string]string(nil), errIs: ErrNil},
		{name: "odd", reply: []any{[]byte("f1"), []byte("v1"), []byte("f2")}, errHas: "3 elements, not field/value pairs"},
		{name: "nested", reply: []any{[]byte("f"), []any{}}, errHas: "for a string"},
		{name: "bulk", reply: []byte("f"), errHas: "for an array"},
		{name: "int64", reply: int64(2), errHas: "for an array"},
		{name: "status", reply: "OK", errHas: "for an array"},
	})
}

func TestDecodeAny(t *testing.T) {
	runDecoder(t, decodeAny, []decodeCase{
		{name: "bulk", reply: []byte("v"), want: "v"},
		{name: "status", reply: "OK", want: "OK"},
		{name: "int64", reply: int64(9), want: int64(9)},
		{name: "nil", reply: nil, want: nil, errIs: ErrNil},
		{name: "array", reply: []any{[]byte("a"), int64(1), "st", nil},
			want: []any{"a", int64(1), "st", nil}},
		{name: "nested", reply: []any{[]any{[]byte("x"), []any{}}, []byte("y")},
			want: []any{[]any{"x", []any{}}, "y"}},
		{name: "error element", reply: []any{[]byte("a"), redis.Error("WRONGTYPE bad")},
			want: []any{"a", &RedisError{Msg: "WRONGTYPE bad"}}},
		// Futures turn a top-level error reply into their error before decoding;
		// decodeAny on its own makes it a value.
		{name: "top-level error", reply: redis.Error("ERR x"), want: &RedisError{Msg: "ERR x"}},
	})
}

// TestDecodeAnyDoesNotAlias checks that decodeAny copies arrays: the reply
// buffer redigo hands over is not kept.
func TestDecodeAnyDoesNotAlias(t *testing.T) {
	in := []any{[]byte("a")}
	out, err := decodeAny(in)
	require.NoError(t, err)
	in[0] = []byte("changed")
	assert.Equal(t, []any{"a"}, out)
}

// TestFutureResolveErrorReply covers the path in front of every decoder: an
// error reply becomes a *RedisError with its prefix, never reaching dec.
func TestFutureResolveErrorReply(t *testing.T) {
	f := &Future[int64]{dec: func(any) (int64, error) { panic("decoder called for an error reply") }}
	f.resolve(redis.Error("WRONGTYPE Operation against a key"), nil)
	var rerr *RedisError
	require.ErrorAs(t, f.err, &rerr)
	assert.Equal(t, "WRONGTYPE", rerr.Prefix())
	assert.Equal(t, any(f.err), f.response())
	assert.Equal(t, f.err, f.failure())

	g := &Future[string]{dec: decodeString}
	g.resolve(nil, nil)
	assert.ErrorIs(t, g.err, ErrNil)
	assert.Nil(t, g.response(), "a nil reply is a nil response")
	assert.NoError(t, g.failure(), "a nil reply is not a failure")
}

// hugeLength reports whether data holds a '$' or '*' length above limit,
// which would make the reader allocate that much before reading on.
func hugeLength(data []byte, limit int) bool {
	for i, c := range data {
		if c != '$' && c != '*' {
			continue
		}
		j := i + 1
		for j < len(data) && data[j] >= '0' && data[j] <= '9' {
			j++
		}
		if j > i+1 {
			n, err := strconv.Atoi(string(data[i+1 : j]))
			if err != nil || n > limit {
				return true
			}
		}
	}
	return false
}

// runAllDecoders feeds reply to every decoder and checks what holds for any
// reply: nil is ErrNil (or false for decodeSetIf), and every other error is
// an rbatch error naming what it expected.
func runAllDecoders(t *testing.T, reply any) {
	check := func(name string, err error) {
		if err == nil || errors.Is(err, ErrNil) {
			if reply == nil && err == nil && name != "decodeSetIf" {
				t.Errorf("%s(nil) = no error, want ErrNil", name)
			}
			return
		}
		if !strings.HasPrefix(err.Error(), "rbatch: ") {
			t.Errorf("%s(%#v): error %q lacks the rbatch prefix", name, reply, err)
		}
	}
	_, err := decodeInt64(reply)
	check("decodeInt64", err)
	_, err = decodeFloat(reply)
	check("decodeFloat", err)
	_, err = decodeString(reply)
	check("decodeString", err)
	_, err = decodeOK(reply)
	check("decodeOK", err)
	_, err = decodePositive(reply)
	check("decodePositive", err)
	_, err = decodeSetIf(reply)
	check("decodeSetIf", err)
	strs, err := decodeStrings(reply)
	check("decodeStrings", err)
	if arr, ok := reply.([]any); ok && err == nil && len(strs) != len(arr) {
		t.Errorf("decodeStrings: %d strings from %d elements", len(strs), len(arr))
	}
	m, err := decodeStringMap(reply)
	check("decodeStringMap", err)
	if err == nil && m == nil {
		t.Errorf("decodeStringMap(%#v) = nil map without error", reply)
	}
	_, err = decodeAny(reply)
	check("decodeAny", err)
	_, err = decodeAdded(reply)
	check("decodeAdded", err)
	for _, f := range []outcome{&Future[int64]{dec: decodeInt64}, &Future[any]{dec: decodeAny},
		&Future[map[string]string]{dec: decodeStringMap}} {
		f.resolve(reply, nil)
		_ = f.response()
		_ = f.failure()
	}
}

func FuzzDecoders(f *testing.F) {
	for _, seed := range []string{
		"+OK\r\n", "+QUEUED\r\n", "-ERR unknown command\r\n", "-WRONGTYPE Operation\r\n",
		":0\r\n", ":1\r\n", ":-9223372036854775808\r\n", ":9223372036854775807\r\n",
		"$1\r\nv\r\n", "$0\r\n\r\n", "$-1\r\n", "$3\r\n1.5\r\n", "$3\r\ninf\r\n", "$4\r\n-inf\r\n",
		"$20\r\n99999999999999999999\r\n",
		"*0\r\n", "*-1\r\n", "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "*3\r\n$1\r\nf\r\n$1\r\nv\r\n$-1\r\n",
		"*2\r\n*1\r\n:1\r\n-ERR inner\r\n", "*4\r\n$2\r\nf1\r\n:5\r\n+st\r\n*-1\r\n",
		"*1\r\n*1\r\n*1\r\n*1\r\n$1\r\nx\r\n", "garbage", "", "$5\r\nab\r\n", ":abc\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The raw bytes in every scalar shape redigo produces.
		runAllDecoders(t, data)
		runAllDecoders(t, string(data))
		if n, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			runAllDecoders(t, n)
		}
		runAllDecoders(t, []any{data, string(data), nil, redis.Error(data)})

		// The bytes read as RESP replies, as rbatch's connections read them.
		if hugeLength(data, 1<<16) {
			return
		}
		r := resp.NewReader(bytes.NewReader(data), 0)
		for range 8 {
			reply, err := r.Read()
			if err != nil {
				return
			}
			runAllDecoders(t, reply)
		}
	})
}

// A batch holds one future per command: the common ones stay small.
func TestFutureSize(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(Future[bool]{}), uintptr(40))
	assert.LessOrEqual(t, unsafe.Sizeof(Future[struct{}]{}), uintptr(40))
	assert.LessOrEqual(t, unsafe.Sizeof(Future[int64]{}), uintptr(48))
}
