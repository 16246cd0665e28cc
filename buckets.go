package rbatch

import (
	"fmt"
	"slices"

	"github.com/rbatch/rbatch/internal/route"
)

// Buckets acts on many string values at once (Redisson's RBuckets).
type Buckets struct{ b *Batch }

// Buckets returns the multi-key string commands.
func (b *Batch) Buckets() *Buckets { return &Buckets{b} }

// GetAsync reads the values of keys (MGET); missing keys are absent from
// the map. In a cluster the keys are split per slot and the replies joined.
func (o *Buckets) GetAsync(keys ...string) *Future[map[string]string] {
	var err error
	if len(keys) == 0 {
		err = fmt.Errorf("Buckets.GetAsync needs at least one key")
	}
	return enqueue(o.b, byName(keys), "MGET", 1, err, stringArgs(keys)...)
}

// SetAsync sets every key of kv to its value (MSET). In a cluster the keys
// are split per slot, one MSET each: each slot's are set at once, not the
// whole map.
func (o *Buckets) SetAsync(kv map[string]any) *Future[struct{}] {
	args, err := pairArgs("Buckets.SetAsync", kv)
	return enqueue(o.b, decodeOK, "MSET", 1, err, args...)
}

// TrySetAsync sets every key of kv only if none of them exists (MSETNX);
// true when they were set. All or none: in a cluster the keys must share
// one slot (hash tags), else ErrCrossSlot and nothing is sent; through
// twemproxy, which closes the connection on MSETNX, it fails alone with
// ErrUnsupported, not sent.
func (o *Buckets) TrySetAsync(kv map[string]any) *Future[bool] {
	args, err := pairArgs("Buckets.TrySetAsync", kv)
	if err == nil && o.b.c.cluster && !oneSlotPairs(args) {
		err = fmt.Errorf("MSETNX sets all keys or none, so they must share one slot: %w", ErrCrossSlot)
	}
	return enqueue(o.b, decodePositive, "MSETNX", 1, err, args...)
}

// pairArgs lays out kv as key, value, … in key order.
func pairArgs(what string, kv map[string]any) ([]any, error) {
	if len(kv) == 0 {
		return nil, fmt.Errorf("%s needs at least one key", what)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	args := make([]any, 0, 2*len(kv))
	for _, k := range keys {
		args = append(args, k, kv[k])
	}
	return args, nil
}

// oneSlotPairs reports whether the keys of key/value args share a slot.
func oneSlotPairs(args []any) bool {
	first := route.Slot(args[0].(string))
	for i := 2; i < len(args); i += 2 {
		if route.Slot(args[i].(string)) != first {
			return false
		}
	}
	return true
}

// byName decodes an array of values (MGET, HMGET) into a map from names,
// in order, to the values that are not nil.
func byName(names []string) func(any) (map[string]string, error) {
	names = slices.Clone(names)
	return func(reply any) (map[string]string, error) {
		arr, ok := reply.([]any)
		if !ok {
			return nil, unexpected("an array", reply)
		}
		m := make(map[string]string, len(arr))
		for i, v := range arr {
			if v == nil || i >= len(names) {
				continue
			}
			if re := redisErrorOf(v); re != nil {
				return nil, re
			}
			s, err := decodeString(v)
			if err != nil {
				return nil, err
			}
			m[names[i]] = s
		}
		return m, nil
	}
}

func stringArgs(ss []string) []any {
	args := make([]any, len(ss))
	for i, s := range ss {
		args[i] = s
	}
	return args
}
