package resp

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

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
		{"float64 1e21", 1e21, "1" + strings.Repeat("0", 21)},
		{"float64 1e-7", 1e-7, "0.0000001"},
		{"float64 max", math.MaxFloat64, "17976931348623157" + strings.Repeat("0", 292)},
		{"float64 smallest", math.SmallestNonzeroFloat64, "0." + strings.Repeat("0", 323) + "5"},
		{"float64 +Inf", inf, "+inf"},
		{"float64 -Inf", -inf, "-inf"},
		{"float64 negative zero", math.Copysign(0, -1), "-0"},
		{"float32 0.1", float32(0.1), "0.1"},
		{"float32 1.5", float32(1.5), "1.5"},
		{"float32 +Inf", float32(inf), "+inf"},
		{"float32 -Inf", float32(-inf), "-inf"},
		{"float32 1e21", float32(1e21), "1" + strings.Repeat("0", 21)},
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
		{"struct without codec", nil, point{1, 2}, ErrNoCodec, "resp.point"},
		{"pointer without codec", nil, &point{}, ErrNoCodec, "*resp.point"},
		{"slice without codec", nil, []int{1}, ErrNoCodec, "[]int"},
		{"map without codec", nil, map[string]int{}, ErrNoCodec, "map[string]int"},
		{"codec fails", fakeEncoder{err: encErr}, point{}, encErr, "encoding value of type resp.point"},
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
		0: "0", 1: "1", -1: "-1", 0.1: "0.1", 1e21: "1000000000000000000000", 123456789: "123456789", 1e6: "1000000", 2.5e6: "2500000",
		math.Inf(1): "+inf", math.Inf(-1): "-inf",
	} {
		assert.Equal(t, want, string(FormatFloat(nil, f, 64)), "%v", f)
	}
	assert.Equal(t, "0.1", string(FormatFloat(nil, float64(float32(0.1)), 32)))
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
