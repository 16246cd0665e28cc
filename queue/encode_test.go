package queue

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bulk is the RESP bulk string of s.
func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// command is the RESP array of name and args, written out by hand.
func command(parts ...string) string {
	var sb strings.Builder
	sb.WriteString("*" + strconv.Itoa(len(parts)) + "\r\n")
	for _, p := range parts {
		sb.WriteString(bulk(p))
	}
	return sb.String()
}

// fakeEncoder encodes any value as "enc:<%v>", or fails with err.
type fakeEncoder struct{ err error }

func (e fakeEncoder) Encode(v any) ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	return []byte(fmt.Sprintf("enc:%v", v)), nil
}

type (
	namedString string
	namedInt    int32
	namedUint   uint16
	namedFloat  float64
	namedBool   bool
	point       struct{ X, Y int }
)

func TestAppendArgEncoding(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		name string
		v    any
		want string // the argument's text, sent as one bulk string
	}{
		{"string", "hello", "hello"},
		{"empty string", "", ""},
		{"string with CRLF", "a\r\nb", "a\r\nb"},
		{"utf-8 string", "héllo", "héllo"},
		{"[]byte", []byte("raw\x00bytes"), "raw\x00bytes"},
		{"empty []byte", []byte{}, ""},
		{"nil []byte", []byte(nil), ""},
		{"int", int(-42), "-42"},
		{"int min", int(math.MinInt64), "-9223372036854775808"},
		{"int8", int8(-128), "-128"},
		{"int16", int16(32767), "32767"},
		{"int32", int32(-2147483648), "-2147483648"},
		{"int64", int64(math.MaxInt64), "9223372036854775807"},
		{"uint", uint(7), "7"},
		{"uint8", uint8(255), "255"},
		{"uint16", uint16(65535), "65535"},
		{"uint32", uint32(4294967295), "4294967295"},
		{"uint64 max", uint64(math.MaxUint64), "18446744073709551615"},
		{"uintptr", uintptr(12), "12"},
		{"float64 0.1", 0.1, "0.1"},
		{"float64 integral", 3.0, "3"},
		{"float64 negative", -2.5, "-2.5"},
		{"float64 1e21", 1e21, "1e+21"},
		{"float64 1e-7", 1e-7, "1e-07"},
		{"float64 max", math.MaxFloat64, "1.7976931348623157e+308"},
		{"float64 smallest", math.SmallestNonzeroFloat64, "5e-324"},
		{"float64 +Inf", inf, "+inf"},
		{"float64 -Inf", -inf, "-inf"},
		{"float64 negative zero", math.Copysign(0, -1), "-0"},
		{"float32 0.1", float32(0.1), "0.1"},
		{"float32 1.5", float32(1.5), "1.5"},
		{"float32 +Inf", float32(inf), "+inf"},
		{"float32 -Inf", float32(-inf), "-inf"},
		{"float32 1e21", float32(1e21), "1e+21"},
		{"bool true", true, "1"},
		{"bool false", false, "0"},
		{"named string", namedString("named"), "named"},
		{"named int32", namedInt(-5), "-5"},
		{"named uint16", namedUint(5), "5"},
		{"named float64", namedFloat(0.25), "0.25"},
		{"named bool", namedBool(true), "1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendArg(nil, nil, tc.v)
			require.NoError(t, err)
			assert.Equal(t, bulk(tc.want), string(got))

			// The same with a codec: native kinds never go through it.
			got, err = AppendArg([]byte("prefix"), fakeEncoder{err: errors.New("must not be called")}, tc.v)
			require.NoError(t, err)
			assert.Equal(t, "prefix"+bulk(tc.want), string(got))
		})
	}
}

// NaN is encoded as Go spells it; the batch refuses NaN scores before
// encoding (checkScore), so this only documents what AppendArg itself does.
func TestAppendArgNaN(t *testing.T) {
	got, err := AppendArg(nil, nil, math.NaN())
	require.NoError(t, err)
	assert.Equal(t, bulk("NaN"), string(got))
}

func TestAppendArgCodec(t *testing.T) {
	got, err := AppendArg(nil, fakeEncoder{}, point{1, 2})
	require.NoError(t, err)
	assert.Equal(t, bulk("enc:{1 2}"), string(got))

	got, err = AppendArg(nil, fakeEncoder{}, &point{3, 4})
	require.NoError(t, err)
	assert.Equal(t, bulk("enc:&{3 4}"), string(got))

	got, err = AppendArg(nil, fakeEncoder{}, []string{"a", "b"})
	require.NoError(t, err)
	assert.Equal(t, bulk("enc:[a b]"), string(got))
}

func TestAppendArgErrors(t *testing.T) {
	encErr := errors.New("boom")
	cases := []struct {
		name    string
		enc     Encoder
		v       any
		is      error  // errors.Is target; nil: none
		message string // substring of the error
	}{
		{"struct without codec", nil, point{1, 2}, ErrNoCodec, "queue.point"},
		{"pointer without codec", nil, &point{}, ErrNoCodec, "*queue.point"},
		{"slice without codec", nil, []int{1}, ErrNoCodec, "[]int"},
		{"map without codec", nil, map[string]int{}, ErrNoCodec, "map[string]int"},
		{"codec fails", fakeEncoder{err: encErr}, point{}, encErr, "encoding value of type queue.point"},
		{"nil value", nil, nil, nil, "nil value"},
		{"nil value with codec", fakeEncoder{}, nil, nil, "nil value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := AppendArg(dst, tc.enc, tc.v)
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.Contains(t, err.Error(), tc.message)
			assert.Equal(t, "keep", string(got), "dst unchanged on error")

			// AppendCommand names the argument and leaves dst as it was.
			dst = append(make([]byte, 0, 256), "prev"...)
			got, err = AppendCommand(dst, tc.enc, "SET", "key", tc.v, "tail")
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.Contains(t, err.Error(), "argument 2")
			assert.Equal(t, "prev", string(got), "dst unchanged on error")
		})
	}
}

func TestAppendCommand(t *testing.T) {
	cases := []struct {
		name string
		cmd  string
		args []any
		want string
	}{
		{"no args", "PING", nil, "*1\r\n$4\r\nPING\r\n"},
		{"SET", "SET", []any{"k", "v"}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"},
		{"mixed", "ZADD", []any{"z", 1.5, []byte("m"), int64(-1), true},
			command("ZADD", "z", "1.5", "m", "-1", "1")},
		{"name kept as given", "get", []any{"k"}, command("get", "k")},
		{"empty args", "SET", []any{"", ""}, "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n"},
	}
	// Lengths and counts at each width of the decimal header.
	type tcase = struct {
		name string
		cmd  string
		args []any
		want string
	}
	for _, n := range []int{9, 10, 11, 99, 100, 101, 999, 1000, 65536} {
		args, parts := make([]any, n), []string{"RPUSH"}
		for i := range args {
			args[i] = "x"
			parts = append(parts, "x")
		}
		cases = append(cases, tcase{fmt.Sprintf("%d args", n), "RPUSH", args, command(parts...)},
			tcase{fmt.Sprintf("%d bytes", n), "SET", []any{strings.Repeat("v", n)}, command("SET", strings.Repeat("v", n))})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendCommand([]byte("before|"), nil, tc.cmd, tc.args...)
			require.NoError(t, err)
			assert.Equal(t, "before|"+tc.want, string(got))
		})
	}
}

func TestFormatFloat(t *testing.T) {
	for f, want := range map[float64]string{
		0: "0", 1: "1", -1: "-1", 0.1: "0.1", 1e21: "1e+21", 123456789: "1.23456789e+08",
		math.Inf(1): "+inf", math.Inf(-1): "-inf",
	} {
		assert.Equal(t, want, string(FormatFloat(nil, f, 64)), "%v", f)
	}
	assert.Equal(t, "0.1", string(FormatFloat(nil, float64(float32(0.1)), 32)))
}

func TestQueueAddBytes(t *testing.T) {
	var q Queue
	assert.Equal(t, 0, q.Len())
	i0 := q.Add(Command{Name: "SET", Key: "k"}, nil, "k", "v")
	i1 := q.Add(Command{Name: "RPUSH", Key: "l"}, nil, "l", 1)
	assert.Equal(t, 0, i0)
	assert.Equal(t, 1, i1)
	assert.Equal(t, 2, q.Len())
	assert.Equal(t, command("SET", "k", "v"), string(q.Bytes(0)))
	assert.Equal(t, command("RPUSH", "l", "1"), string(q.Bytes(1)))
	assert.Equal(t, "SET", q.Name(0))
	assert.Equal(t, "l", q.Key(1))
	assert.NoError(t, q.Err(0))
}

// The name and routing key are read back from the encoding; a key that is
// not an argument, and the name and key of a command that did not encode,
// are kept aside.
func TestQueueNameAndKey(t *testing.T) {
	var q Queue
	keyed := q.AddKeyed(Command{Name: "SADD", Key: "s"}, nil, "m")
	third := q.Add(Command{Name: "EVALSHA", Key: "k1"}, nil, "abc", 2, "k1", "k2")
	keyless := q.Add(Command{Name: "PING"}, nil)
	elsewhere := q.Add(Command{Name: "CUSTOM.CMD", Key: "routed"}, nil, "x", "y")
	bad := q.Add(Command{Name: "SET", Key: "b"}, nil, "b", point{})

	for _, c := range []struct {
		i         int
		name, key string
	}{{keyed, "SADD", "s"}, {third, "EVALSHA", "k1"}, {keyless, "PING", ""},
		{elsewhere, "CUSTOM.CMD", "routed"}, {bad, "SET", "b"}} {
		assert.Equal(t, c.name, q.Name(c.i), "command %d", c.i)
		assert.Equal(t, c.key, q.Key(c.i), "command %d", c.i)
		assert.Equal(t, c.key != "", q.KeyBytes(c.i) != nil, "command %d", c.i)
		if c.key == "" {
			assert.Nil(t, q.KeyBytes(c.i))
		} else {
			assert.Equal(t, c.key, string(q.KeyBytes(c.i)))
		}
	}
	assert.Equal(t, uint8(3), q.At(third).keyArg, "found among the arguments")
	assert.Equal(t, 4, q.NArgs(third))
	assert.Equal(t, 0, q.NArgs(keyless))
	assert.Equal(t, uint8(0), q.At(elsewhere).keyArg, "kept aside")
	assert.Nil(t, q.Bytes(bad))
	// Names of the command table are shared, not made anew each time.
	assert.Equal(t, unsafe.StringData(q.Name(keyed)), unsafe.StringData(q.Name(keyed)))
	// Queued stays small: it is kept for every command of a batch.
	assert.LessOrEqual(t, unsafe.Sizeof(Queued{}), uintptr(32))
}

func TestQueueAddKeepsErrors(t *testing.T) {
	var q Queue
	q.Add(Command{Name: "SET"}, nil, "a", "1")
	bad := q.Add(Command{Name: "SET"}, nil, "b", point{})
	preset := errors.New("refused before encoding")
	refused := q.Add(Command{Name: "ZADD", Err: preset}, nil, "z", 1.0, "m")
	last := q.Add(Command{Name: "SET"}, nil, "c", "3")

	assert.Equal(t, []int{0, 1, 2, 3}, []int{0, bad, refused, last})
	assert.ErrorIs(t, q.Err(bad), ErrNoCodec)
	assert.Contains(t, q.Err(bad).Error(), "argument 2")
	assert.Same(t, preset, q.Err(refused))

	// The failed encoding left nothing behind: the good commands are back to back.
	assert.Equal(t, command("SET", "a", "1"), string(q.Bytes(0)))
	assert.Equal(t, command("SET", "c", "3"), string(q.Bytes(last)))
	b, n := q.Span([]int{0, last})
	assert.Equal(t, 2, n)
	assert.Equal(t, command("SET", "a", "1")+command("SET", "c", "3"), string(b))
}

func TestQueueSpan(t *testing.T) {
	var q Queue
	var want []string
	for i := range 5 {
		q.Add(Command{Name: "SET"}, nil, fmt.Sprint("k", i), i)
		want = append(want, command("SET", fmt.Sprint("k", i), strconv.Itoa(i)))
	}
	cases := []struct {
		idx   []int
		wantN int
	}{
		{[]int{0, 1, 2, 3, 4}, 5},
		{[]int{0}, 1},
		{[]int{1, 2, 3}, 3},
		{[]int{0, 1, 3, 4}, 2}, // a gap stops the span
		{[]int{0, 2}, 1},
		{[]int{3, 2}, 1}, // out of order is not contiguous
		{[]int{4}, 1},
	}
	for _, tc := range cases {
		b, n := q.Span(tc.idx)
		assert.Equal(t, tc.wantN, n, "Span(%v)", tc.idx)
		var exp string
		for _, i := range tc.idx[:tc.wantN] {
			exp += want[i]
		}
		assert.Equal(t, exp, string(b), "Span(%v)", tc.idx)
	}
}

// spans walks idx with Span as a writer does and returns the span sizes and
// the bytes they cover.
func spans(q *Queue, idx []int) (sizes []int, all []byte) {
	for len(idx) > 0 {
		b, n := q.Span(idx)
		sizes = append(sizes, n)
		all = append(all, b...)
		idx = idx[n:]
	}
	return sizes, all
}

func TestQueueSpanStopsAtChunkBoundary(t *testing.T) {
	var q Queue
	value := strings.Repeat("x", 1000)
	one := len(command("SET", "k0000", value))
	// Commands go into the current chunk while it has chunkSlack room left.
	perChunk := (chunkSize-chunkSlack)/one + 1
	total := 2*perChunk + 10
	idx := make([]int, total)
	var want []byte
	for i := range total {
		idx[i] = q.Add(Command{Name: "SET"}, nil, fmt.Sprintf("k%04d", i), value)
		want = append(want, q.Bytes(i)...)
	}
	require.Len(t, want, total*one)

	sizes, all := spans(&q, idx)
	assert.Equal(t, []int{perChunk, perChunk, 10}, sizes)
	assert.True(t, bytes.Equal(want, all), "spans cover every command once, in order")
}

func TestQueueLargeCommand(t *testing.T) {
	var q Queue
	big := strings.Repeat("b", chunkSize+chunkSize/2)
	q.Add(Command{Name: "SET"}, nil, "small1", "1")
	q.Add(Command{Name: "SET"}, nil, "big", big)
	q.Add(Command{Name: "SET"}, nil, "small2", "2")
	q.Add(Command{Name: "SET"}, nil, "big2", big) // first in its chunk: it starts when the previous one is full
	q.Add(Command{Name: "SET"}, nil, "small3", "3")

	assert.Equal(t, command("SET", "big", big), string(q.Bytes(1)))
	assert.Equal(t, command("SET", "small2", "2"), string(q.Bytes(2)))
	assert.Equal(t, command("SET", "big2", big), string(q.Bytes(3)))
	assert.Equal(t, command("SET", "small3", "3"), string(q.Bytes(4)))

	sizes, all := spans(&q, []int{0, 1, 2, 3, 4})
	assert.Equal(t, []int{2, 2, 1}, sizes)
	want := command("SET", "small1", "1") + command("SET", "big", big) + command("SET", "small2", "2") +
		command("SET", "big2", big) + command("SET", "small3", "3")
	assert.Equal(t, want, string(all))
}

type lookupCase struct {
	name, sub string
	wantName  string
	flags     Flags
	forbidden bool
}

func TestLookup(t *testing.T) {
	cases := []lookupCase{
		{"GET", "k", "GET", ReadOnly, false},
		{"get", "k", "GET", ReadOnly, false},
		{"  gEt ", "k", "GET", ReadOnly, false},
		{"SET", "k", "SET", 0, false},
		{"set", "k", "SET", 0, false},
		{"EVALSHA", "sha", "EVALSHA", 0, false},
		{"EVALSHA_RO", "sha", "EVALSHA_RO", ReadOnly, false},
		{"PING", "", "PING", ReadOnly | NoKey, false},
		{"FLUSHALL", "", "FLUSHALL", NoKey, false},
		{"CLIENT", "LIST", "CLIENT", NoKey, false},
		{"client", "list", "CLIENT", NoKey, false},
		{"SOMETHINGNEW", "x", "SOMETHINGNEW", 0, false}, // unknown: a keyed write
		{"CLIENT", "REPLY", "CLIENT", 0, true},
		{"client", "reply", "CLIENT", 0, true},
		{"CLIENT", "Reply", "CLIENT", 0, true},
	}
	for _, name := range []string{"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
		"SUNSUBSCRIBE", "MONITOR", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "SWAPDB",
		"AUTH", "HELLO", "RESET", "QUIT", "WAIT", "WAITAOF"} {
		cases = append(cases,
			lookupCase{name, "", name, 0, true},
			lookupCase{strings.ToLower(name), "", name, 0, true})
	}
	for _, tc := range cases {
		t.Run(tc.name+" "+tc.sub, func(t *testing.T) {
			name, flags, err := Lookup(tc.name, tc.sub)
			assert.Equal(t, tc.wantName, name)
			if tc.forbidden {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrForbidden)
				assert.Contains(t, err.Error(), "not allowed in a batch")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.flags, flags)
			assert.Equal(t, FlagsOf(name), flags)
		})
	}
}

func TestLookupEmptyName(t *testing.T) {
	for _, name := range []string{"", "   ", "\t"} {
		_, _, err := Lookup(name, "")
		require.Error(t, err, "%q", name)
		assert.NotErrorIs(t, err, ErrForbidden)
		assert.Contains(t, err.Error(), "empty command name")
	}
}

func TestFlagsOf(t *testing.T) {
	assert.Equal(t, ReadOnly, FlagsOf("GET"))
	assert.Equal(t, Flags(0), FlagsOf("SET"))
	assert.Equal(t, Flags(0), FlagsOf("get"), "FlagsOf takes upper-case names")
	assert.Equal(t, ReadOnly, FlagsOf("LRANGE"))
	assert.Equal(t, Flags(0), FlagsOf("RPUSH"))
	assert.Equal(t, NoKey, FlagsOf("SCRIPT"))
}

// parseBulk reads one RESP bulk string from p: its payload and the rest.
func parseBulk(p []byte) (payload, rest []byte, err error) {
	if len(p) == 0 || p[0] != '$' {
		return nil, nil, errors.New("not a bulk string")
	}
	i := bytes.Index(p, []byte("\r\n"))
	if i < 0 {
		return nil, nil, errors.New("no CRLF after the length")
	}
	n, err := strconv.Atoi(string(p[1:i]))
	if err != nil || n < 0 {
		return nil, nil, fmt.Errorf("bad length %q", p[1:i])
	}
	p = p[i+2:]
	if len(p) < n+2 || p[n] != '\r' || p[n+1] != '\n' {
		return nil, nil, errors.New("payload not followed by CRLF")
	}
	return p[:n], p[n+2:], nil
}

// parseArray reads one RESP array of bulk strings that fills p exactly.
func parseArray(p []byte) ([][]byte, error) {
	if len(p) == 0 || p[0] != '*' {
		return nil, errors.New("not an array")
	}
	i := bytes.Index(p, []byte("\r\n"))
	if i < 0 {
		return nil, errors.New("no CRLF after the count")
	}
	n, err := strconv.Atoi(string(p[1:i]))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("bad count %q", p[1:i])
	}
	p = p[i+2:]
	out := make([][]byte, n)
	for j := range out {
		if out[j], p, err = parseBulk(p); err != nil {
			return nil, fmt.Errorf("element %d: %w", j, err)
		}
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%d bytes after the array", len(p))
	}
	return out, nil
}

func FuzzAppendArg(f *testing.F) {
	f.Add("", []byte(nil), int64(0), 0.0)
	f.Add("hello", []byte("world"), int64(-1), 0.1)
	f.Add("a\r\nb", []byte("\r\n$3\r\n"), int64(math.MaxInt64), 1e21)
	f.Add("*1\r\n$4\r\nPING\r\n", []byte{0, 1, 2, 255}, int64(math.MinInt64), math.Inf(1))
	f.Add("héllo wörld", []byte("é"), int64(42), math.Inf(-1))
	f.Add(strings.Repeat("x", 300), []byte(strings.Repeat("y", 70000)), int64(1e18), math.SmallestNonzeroFloat64)
	f.Add("-", []byte("+"), int64(7), math.MaxFloat64)
	f.Add(" ", []byte(" "), int64(-7), math.Copysign(0, -1))
	f.Add("nan", []byte("inf"), int64(10), math.NaN())

	f.Fuzz(func(t *testing.T, s string, b []byte, n int64, x float64) {
		check := func(v any, want func(payload []byte) error) {
			enc, err := AppendArg([]byte("prefix"), nil, v)
			if err != nil {
				t.Fatalf("AppendArg(%T): %v", v, err)
			}
			if !bytes.HasPrefix(enc, []byte("prefix")) {
				t.Fatalf("AppendArg(%T) dropped dst", v)
			}
			payload, rest, err := parseBulk(enc[len("prefix"):])
			if err != nil {
				t.Fatalf("AppendArg(%T) = %q: %v", v, enc, err)
			}
			if len(rest) != 0 {
				t.Fatalf("AppendArg(%T) = %q: %d trailing bytes", v, enc, len(rest))
			}
			if err := want(payload); err != nil {
				t.Fatalf("AppendArg(%T): %v", v, err)
			}
		}
		check(s, func(p []byte) error {
			if string(p) != s {
				return fmt.Errorf("string %q came back as %q", s, p)
			}
			return nil
		})
		check(b, func(p []byte) error {
			if !bytes.Equal(p, b) {
				return fmt.Errorf("[]byte %q came back as %q", b, p)
			}
			return nil
		})
		check(n, func(p []byte) error {
			got, err := strconv.ParseInt(string(p), 10, 64)
			if err != nil || got != n {
				return fmt.Errorf("int64 %d came back as %q (%v)", n, p, err)
			}
			return nil
		})
		check(x, func(p []byte) error {
			got, err := strconv.ParseFloat(string(p), 64)
			if err != nil {
				return fmt.Errorf("float64 %v came back as %q: %v", x, p, err)
			}
			if got != x && !(math.IsNaN(got) && math.IsNaN(x)) {
				return fmt.Errorf("float64 %v came back as %q = %v", x, p, got)
			}
			if math.Signbit(got) != math.Signbit(x) && !math.IsNaN(x) {
				return fmt.Errorf("float64 %v lost its sign: %q", x, p)
			}
			return nil
		})

		// The whole command parses back into the same arguments.
		cmd, err := AppendCommand(nil, nil, "CMD", s, b, n, x)
		if err != nil {
			t.Fatalf("AppendCommand: %v", err)
		}
		parts, err := parseArray(cmd)
		if err != nil {
			t.Fatalf("AppendCommand = %q: %v", cmd, err)
		}
		if len(parts) != 5 || string(parts[0]) != "CMD" || string(parts[1]) != s || !bytes.Equal(parts[2], b) ||
			string(parts[3]) != strconv.FormatInt(n, 10) {
			t.Fatalf("AppendCommand = %q parsed as %q", cmd, parts)
		}
	})
}

// Release hands the buffers on cleared of futures, and later queues encode
// into them correctly, whether or not they get the same buffers back.
func TestQueueRelease(t *testing.T) {
	var q Queue
	fut := &struct{ n int }{}
	n := blockSize + 10 // a full block and part of another
	for i := range n {
		q.AddKeyed(Command{Name: "SET", Key: fmt.Sprint("k", i), Future: fut}, nil, "v")
	}
	blocks := q.blocks
	q.Release()
	assert.Equal(t, n, q.Len())
	for _, b := range blocks {
		for i := range b {
			require.Nil(t, b[i].Future, "a released block keeps no future")
		}
	}

	var q2 Queue
	for i := range n {
		q2.AddKeyed(Command{Name: "GET", Key: fmt.Sprint("x", i)}, nil)
	}
	for i := range n {
		require.Equal(t, command("GET", fmt.Sprint("x", i)), string(q2.Bytes(i)))
		require.Nil(t, q2.At(i).Future)
		require.Equal(t, fmt.Sprint("x", i), q2.Key(i))
	}
}
