package rbatch

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// SetIfAbsentAsync sets the value only if the key does not exist (SET … NX,
// with PX when ttl > 0; ttl 0 sets no expiry, and a negative one, or one
// under a millisecond, refuses the batch); true when it was set.
func (o *Bucket) SetIfAbsentAsync(v any, ttl time.Duration) *Future[bool] {
	return o.setIf("NX", v, ttl)
}

// SetIfExistsAsync sets the value only if the key exists (SET … XX, with PX
// when ttl > 0); true when it was set. With ttl 0 the key is left without a
// TTL, as SET leaves it.
func (o *Bucket) SetIfExistsAsync(v any, ttl time.Duration) *Future[bool] {
	return o.setIf("XX", v, ttl)
}

func (o *Bucket) setIf(cond string, v any, ttl time.Duration) *Future[bool] {
	if ttl == 0 {
		return keyed(o.b, decodeSetIf, "SET", o.key, nil, v, cond)
	}
	return keyed(o.b, decodeSetIf, "SET", o.key, checkTTL(ttl), v, "PX", ttl.Milliseconds(), cond)
}

// GetAllAsync reads fields (HMGET); fields that do not exist are absent
// from the map.
func (o *Map) GetAllAsync(fields ...string) *Future[map[string]string] {
	var err error
	if len(fields) == 0 {
		err = errors.New("Map.GetAllAsync needs at least one field")
	}
	return keyed(o.b, byName(fields), "HMGET", o.key, err, stringArgs(fields)...)
}

// PutAllAsync sets every field of kv (HSET with many fields).
func (o *Map) PutAllAsync(kv map[string]any) *Future[struct{}] {
	args, err := pairArgs("Map.PutAllAsync", kv)
	return keyed(o.b, decodeAdded, "HSET", o.key, err, args...)
}

// FastPutIfAbsentAsync sets field only if it does not exist (HSETNX); true
// when it was set.
func (o *Map) FastPutIfAbsentAsync(field string, v any) *Future[bool] {
	return keyed(o.b, decodePositive, "HSETNX", o.key, nil, field, v)
}

// AddAllAsync adds or updates members with their scores (ZADD with many
// pairs) and returns how many were new. NaN fails the batch.
func (o *ScoredSortedSet) AddAllAsync(scores map[string]float64) *Future[int64] {
	var err error
	if len(scores) == 0 {
		err = errors.New("ScoredSortedSet.AddAllAsync needs at least one member")
	}
	members := make([]string, 0, len(scores))
	for m := range scores {
		members = append(members, m)
	}
	slices.Sort(members)
	args := make([]any, 0, 2*len(scores))
	for _, m := range members {
		if e := checkScore("score of "+strconv.Quote(m), scores[m]); e != nil && err == nil {
			err = e
		}
		args = append(args, scores[m], m)
	}
	return keyed(o.b, decodeInt64, "ZADD", o.key, err, args...)
}

// ValueRangeByScoreAsync reads the members whose score lies in [min, max],
// lowest first (ZRANGEBYSCORE); ±Inf are open ends.
func (o *ScoredSortedSet) ValueRangeByScoreAsync(min, max float64) *Future[[]string] {
	err := checkScore("min", min)
	if e := checkScore("max", max); err == nil {
		err = e
	}
	return keyed(o.b, decodeStrings, "ZRANGEBYSCORE", o.key, err, scoreBound(min), scoreBound(max))
}

// CountAsync returns how many members have a score in [min, max] (ZCOUNT).
func (o *ScoredSortedSet) CountAsync(min, max float64) *Future[int64] {
	err := checkScore("min", min)
	if e := checkScore("max", max); err == nil {
		err = e
	}
	return keyed(o.b, decodeInt64, "ZCOUNT", o.key, err, scoreBound(min), scoreBound(max))
}

// scoreBound writes a score bound as Redis reads it ("-inf", "+inf", …).
func scoreBound(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64) // plain decimal as values are written; ±Inf format as +Inf/-Inf, which Redis accepts
}

// StreamEntry is one entry of a stream: its ID and its field/value pairs.
type StreamEntry struct {
	ID     string
	Fields map[string]string
}

// RangeAsync reads the entries with IDs in [start, end] (XRANGE; "-" and "+"
// are the ends), at most count of them (0: all).
func (o *Stream) RangeAsync(start, end string, count int) *Future[[]StreamEntry] {
	args := []any{start, end}
	var err error
	switch {
	case count < 0:
		err = fmt.Errorf("Stream.RangeAsync count %d is negative", count)
	case count > 0:
		args = append(args, "COUNT", count)
	}
	return keyed(o.b, decodeEntries, "XRANGE", o.key, err, args...)
}

// ReadAsync reads up to count entries after ID after ("0" from the start),
// without blocking (XREAD COUNT count STREAMS key after); none when there
// are no newer entries.
func (o *Stream) ReadAsync(after string, count int) *Future[[]StreamEntry] {
	var err error
	if count <= 0 {
		err = fmt.Errorf("Stream.ReadAsync count %d is not positive", count)
	}
	dec := func(reply any) ([]StreamEntry, error) {
		if reply == nil {
			return nil, nil // nothing newer
		}
		streams, ok := reply.([]any)
		if !ok || len(streams) != 1 {
			return nil, unexpected("one stream", reply)
		}
		pair, ok := streams[0].([]any)
		if !ok || len(pair) != 2 {
			return nil, unexpected("a stream's name and entries", streams[0])
		}
		return decodeEntries(pair[1])
	}
	// XREAD's key comes after STREAMS: it routes by that argument.
	return enqueue(o.b, dec, "XREAD", 4, err, "COUNT", count, "STREAMS", o.key, after)
}

// decodeEntries reads XRANGE's reply: [[id, [field, value, …]], …].
func decodeEntries(reply any) ([]StreamEntry, error) {
	arr, ok := reply.([]any)
	if !ok {
		return nil, unexpected("an array of entries", reply)
	}
	out := make([]StreamEntry, 0, len(arr))
	for _, e := range arr {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, unexpected("an entry", e)
		}
		id, err := decodeString(pair[0])
		if err != nil {
			return nil, err
		}
		kv, err := decodeStrings(pair[1])
		if err != nil {
			return nil, err
		}
		fields := make(map[string]string, len(kv)/2)
		for k := 0; k+1 < len(kv); k += 2 {
			fields[kv[k]] = kv[k+1]
		}
		out = append(out, StreamEntry{ID: id, Fields: fields})
	}
	return out, nil
}
