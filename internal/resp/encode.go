package resp

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
)

// Encoder turns a value that is not a string, []byte, number or bool into
// bytes. rbatch.Codec satisfies it.
type Encoder interface {
	Encode(v any) ([]byte, error)
}

// ErrNoCodec is the cause when a value needs an Encoder and none was given.
var ErrNoCodec = errors.New("no codec for this value type (set one with WithCodec)")

// AppendCommand appends the RESP array of name and args to dst. On error dst
// is returned unchanged (truncated to its length on entry).
func AppendCommand(dst []byte, enc Encoder, name string, args ...any) ([]byte, error) {
	mark := len(dst)
	dst = appendHeader(dst, '*', len(args)+1)
	dst = appendBulk(dst, name)
	for i, a := range args {
		var err error
		if dst, err = AppendArg(dst, enc, a); err != nil {
			return dst[:mark], fmt.Errorf("argument %d: %w", i+1, err)
		}
	}
	return dst, nil
}

// AppendKeyedCommand is AppendCommand with key as the first argument: the
// key goes in as a string, with no boxing into an interface.
func AppendKeyedCommand(dst []byte, enc Encoder, name, key string, args ...any) ([]byte, error) {
	mark := len(dst)
	dst = appendHeader(dst, '*', len(args)+2)
	dst = appendBulk(dst, name)
	dst = appendBulk(dst, key)
	for i, a := range args {
		var err error
		if dst, err = AppendArg(dst, enc, a); err != nil {
			return dst[:mark], fmt.Errorf("argument %d: %w", i+2, err)
		}
	}
	return dst, nil
}

// AppendArg appends one argument as a RESP bulk string. Strings and []byte go
// as they are; integers and floats in decimal (floats in the shortest form
// that reads back exactly, ±Inf as +inf/-inf); bool as 1 or 0; other values
// through enc.
func AppendArg(dst []byte, enc Encoder, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendBulk(dst, v), nil
	case []byte:
		return appendBulkBytes(dst, v), nil
	case int:
		return appendInt(dst, int64(v)), nil
	case int64:
		return appendInt(dst, v), nil
	case int32:
		return appendInt(dst, int64(v)), nil
	case int16:
		return appendInt(dst, int64(v)), nil
	case int8:
		return appendInt(dst, int64(v)), nil
	case uint:
		return appendUint(dst, uint64(v)), nil
	case uint64:
		return appendUint(dst, v), nil
	case uint32:
		return appendUint(dst, uint64(v)), nil
	case uint16:
		return appendUint(dst, uint64(v)), nil
	case uint8:
		return appendUint(dst, uint64(v)), nil
	case float64:
		return appendFloat(dst, v, 64), nil
	case float32:
		return appendFloat(dst, float64(v), 32), nil
	case bool:
		if v {
			return appendBulk(dst, "1"), nil
		}
		return appendBulk(dst, "0"), nil
	case nil:
		return dst, errors.New("nil value")
	}
	return appendOther(dst, enc, v)
}

// appendOther handles named basic types (type Status string, type Blob
// []byte) by their kind, and everything else through the encoder.
func appendOther(dst []byte, enc Encoder, v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return appendBulk(dst, rv.String()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(dst, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return appendUint(dst, rv.Uint()), nil
	case reflect.Float32:
		return appendFloat(dst, rv.Float(), 32), nil
	case reflect.Float64:
		return appendFloat(dst, rv.Float(), 64), nil
	case reflect.Bool:
		return AppendArg(dst, enc, rv.Bool())
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 { // type Blob []byte
			return appendBulkBytes(dst, rv.Bytes()), nil
		}
	}
	if enc == nil {
		return dst, fmt.Errorf("value of type %T: %w", v, ErrNoCodec)
	}
	b, err := enc.Encode(v)
	if err != nil {
		return dst, fmt.Errorf("encoding value of type %T: %w", v, err)
	}
	return appendBulkBytes(dst, b), nil
}

// FormatFloat writes f as Redis reads scores and increments, and as other
// clients (go-redis, rueidis) write floats: the shortest plain decimal that
// reads back exactly, never an exponent (1e6 is "1000000", which INCRBY
// takes too), and +inf/-inf for the infinities.
func FormatFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(dst, "+inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, bits)
}

func appendHeader(dst []byte, kind byte, n int) []byte {
	// Most headers are a command's few arguments and short strings.
	switch {
	case n >= 0 && n < 10:
		return append(dst, kind, byte('0'+n), '\r', '\n')
	case n >= 10 && n < 100:
		return append(dst, kind, byte('0'+n/10), byte('0'+n%10), '\r', '\n')
	}
	dst = append(dst, kind)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

func appendBulk(dst []byte, s string) []byte {
	dst = appendHeader(dst, '$', len(s))
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func appendBulkBytes(dst []byte, b []byte) []byte {
	dst = appendHeader(dst, '$', len(b))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func appendInt(dst []byte, n int64) []byte {
	var scratch [24]byte
	return appendBulkBytes(dst, strconv.AppendInt(scratch[:0], n, 10))
}

func appendUint(dst []byte, n uint64) []byte {
	var scratch [24]byte
	return appendBulkBytes(dst, strconv.AppendUint(scratch[:0], n, 10))
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	var scratch [32]byte
	return appendBulkBytes(dst, FormatFloat(scratch[:0], f, bits))
}

// Header reads the header of the RESP value at the start of p (an array's
// "*3\r\n", a bulk's "$5\r\n"), written by this package: its count or
// length, and what follows it.
func Header(p []byte) (int, []byte) {
	n, i := 0, 1
	for ; p[i] != '\r'; i++ {
		n = n*10 + int(p[i]-'0')
	}
	return n, p[i+2:]
}
