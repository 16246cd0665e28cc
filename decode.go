package rbatch

import (
	"fmt"
	"reflect"
	"strconv"

	"github.com/gomodule/redigo/redis"
)

// Decoders turn a reply, in redigo's types (int64, []byte, a status string,
// []any, nil), into a future's type. They never panic: an unexpected reply is
// an error naming what was expected.

func unexpected(want string, reply any) error {
	return fmt.Errorf("rbatch: unexpected reply %T for %s", reply, want)
}

func decodeInt64(reply any) (int64, error) {
	switch r := reply.(type) {
	case int64:
		return r, nil
	case []byte:
		n, err := strconv.ParseInt(string(r), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("rbatch: reply %q is not an integer", r)
		}
		return n, nil
	case nil:
		return 0, ErrNil
	}
	return 0, unexpected("an integer", reply)
}

func decodeFloat(reply any) (float64, error) {
	switch r := reply.(type) {
	case []byte:
		f, err := strconv.ParseFloat(string(r), 64)
		if err != nil {
			return 0, fmt.Errorf("rbatch: reply %q is not a number", r)
		}
		return f, nil
	case int64:
		return float64(r), nil
	case nil:
		return 0, ErrNil
	}
	return 0, unexpected("a number", reply)
}

func decodeString(reply any) (string, error) {
	switch r := reply.(type) {
	case []byte:
		return string(r), nil
	case string:
		return r, nil
	case int64:
		return strconv.FormatInt(r, 10), nil
	case nil:
		return "", ErrNil
	}
	return "", unexpected("a string", reply)
}

// decodeOK is for commands answering +OK.
func decodeOK(reply any) (struct{}, error) {
	switch r := reply.(type) {
	case string:
		if r == "OK" {
			return struct{}{}, nil
		}
	case nil:
		return struct{}{}, ErrNil
	}
	return struct{}{}, unexpected("OK", reply)
}

// decodePositive is for integer replies read as "something happened": a count
// of added elements, 1/0 flags, a list length after a push.
func decodePositive(reply any) (bool, error) {
	n, err := decodeInt64(reply)
	return n > 0, err
}

// decodeSetIf is for SET … NX: +OK when set, nil when not.
func decodeSetIf(reply any) (bool, error) {
	switch r := reply.(type) {
	case string:
		if r == "OK" {
			return true, nil
		}
	case nil:
		return false, nil
	}
	return false, unexpected("OK or nil", reply)
}

func decodeStrings(reply any) ([]string, error) {
	switch r := reply.(type) {
	case []any:
		out := make([]string, len(r))
		for i, e := range r {
			if e == nil {
				continue
			}
			if re := redisErrorOf(e); re != nil {
				return nil, re
			}
			s, err := decodeString(e)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case nil:
		return nil, ErrNil
	}
	return nil, unexpected("an array", reply)
}

func decodeStringMap(reply any) (map[string]string, error) {
	items, err := decodeStrings(reply)
	if err != nil {
		return nil, err
	}
	if len(items)%2 != 0 {
		return nil, fmt.Errorf("rbatch: reply has %d elements, not field/value pairs", len(items))
	}
	m := make(map[string]string, len(items)/2)
	for i := 0; i < len(items); i += 2 {
		m[items[i]] = items[i+1]
	}
	return m, nil
}

// decodeAny is Do's decoder: bulk strings become strings, arrays []any of the
// same, error elements *RedisError; integers stay int64 and status replies
// strings. A nil reply is ErrNil.
func decodeAny(reply any) (any, error) {
	if reply == nil {
		return nil, ErrNil
	}
	return plain(reply), nil
}

func plain(reply any) any {
	switch r := reply.(type) {
	case []byte:
		return string(r)
	case redis.Error:
		return &RedisError{Msg: string(r)}
	case []any:
		out := make([]any, len(r))
		for i, e := range r {
			out[i] = plain(e)
		}
		return out
	}
	return reply
}

// argString reads a command's first argument as text when it is one
// (string, []byte or a named string type), for the command table.
func argString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	// Named kinds are sent as their string or bytes (see resp.AppendArg):
	// they are read so here too, or a forbidden subcommand would slip by.
	switch rv := reflect.ValueOf(v); {
	case rv.Kind() == reflect.String:
		return rv.String()
	case rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8:
		return string(rv.Bytes())
	}
	return ""
}
