package rbatch

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// object is what every keyed object shares: its batch and key, and the
// commands that act on the key itself.
type object struct {
	b   *Batch
	key string
}

// DeleteAsync deletes the key (DEL); true when it existed.
func (o *object) DeleteAsync() *Future[bool] {
	return keyed(o.b, decodePositive, "DEL", o.key, nil)
}

// ExpireAsync sets the key's time to live (PEXPIRE); true when the key exists.
// ttl must be at least a millisecond.
func (o *object) ExpireAsync(ttl time.Duration) *Future[bool] {
	return keyed(o.b, decodePositive, "PEXPIRE", o.key, checkTTL(ttl), ttl.Milliseconds())
}

// IsExistsAsync reports whether the key exists (EXISTS).
func (o *object) IsExistsAsync() *Future[bool] {
	return keyed(o.b, decodePositive, "EXISTS", o.key, nil)
}

// RemainTimeToLiveAsync returns the key's time to live in milliseconds
// (PTTL): -1 when it has none, -2 when the key does not exist, as
// Redisson's remainTimeToLive.
func (o *object) RemainTimeToLiveAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "PTTL", o.key, nil)
}

func checkTTL(ttl time.Duration) error {
	switch {
	case ttl <= 0:
		return fmt.Errorf("TTL %v is not positive", ttl)
	case ttl < time.Millisecond:
		return fmt.Errorf("TTL %v is under a millisecond, the unit Redis counts TTLs in", ttl)
	}
	return nil
}

func checkScore(name string, f float64) error {
	if math.IsNaN(f) {
		return fmt.Errorf("%s is NaN", name)
	}
	return nil
}

func atLeastOne(method string, n int) error {
	if n == 0 {
		return fmt.Errorf("%s needs at least one argument", method)
	}
	return nil
}

// Bucket is a string value (Redisson's RBucket).
type Bucket struct{ object }

// Bucket returns the string value at key.
func (b *Batch) Bucket(key string) *Bucket { return &Bucket{object{b, key}} }

// GetAsync reads the value (GET); ErrNil when missing.
func (o *Bucket) GetAsync() *Future[string] {
	return keyed(o.b, decodeString, "GET", o.key, nil)
}

// SetAsync sets the value (SET).
func (o *Bucket) SetAsync(v any) *Future[struct{}] {
	return keyed(o.b, decodeOK, "SET", o.key, nil, v)
}

// SetWithTTLAsync sets the value with a time to live (SET … PX).
func (o *Bucket) SetWithTTLAsync(v any, ttl time.Duration) *Future[struct{}] {
	return keyed(o.b, decodeOK, "SET", o.key, checkTTL(ttl), v, "PX", ttl.Milliseconds())
}

// TrySetAsync sets the value only if the key does not exist (SET … NX).
func (o *Bucket) TrySetAsync(v any) *Future[bool] {
	return keyed(o.b, decodeSetIf, "SET", o.key, nil, v, "NX")
}

// GetAndSetAsync sets the value and returns the old one (GETSET); ErrNil when
// there was none.
func (o *Bucket) GetAndSetAsync(v any) *Future[string] {
	return keyed(o.b, decodeString, "GETSET", o.key, nil, v)
}

// AtomicLong is an integer counter (Redisson's RAtomicLong).
type AtomicLong struct{ object }

// AtomicLong returns the counter at key.
func (b *Batch) AtomicLong(key string) *AtomicLong { return &AtomicLong{object{b, key}} }

// GetAsync reads the counter (GET); 0 and ErrNil when missing.
func (o *AtomicLong) GetAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "GET", o.key, nil)
}

// SetAsync sets the counter (SET).
func (o *AtomicLong) SetAsync(n int64) *Future[struct{}] {
	return keyed(o.b, decodeOK, "SET", o.key, nil, n)
}

// IncrementAndGetAsync adds one (INCR) and returns the new value.
func (o *AtomicLong) IncrementAndGetAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "INCR", o.key, nil)
}

// DecrementAndGetAsync subtracts one (DECR) and returns the new value.
func (o *AtomicLong) DecrementAndGetAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "DECR", o.key, nil)
}

// AddAndGetAsync adds d (INCRBY) and returns the new value.
func (o *AtomicLong) AddAndGetAsync(d int64) *Future[int64] {
	return keyed(o.b, decodeInt64, "INCRBY", o.key, nil, d)
}

// List is a list (Redisson's RList).
type List struct{ object }

// List returns the list at key.
func (b *Batch) List(key string) *List { return &List{object{b, key}} }

// AddAsync appends v (RPUSH); true once added.
func (o *List) AddAsync(v any) *Future[bool] {
	return keyed(o.b, decodePositive, "RPUSH", o.key, nil, v)
}

// AddAllAsync appends vs in order (one RPUSH).
func (o *List) AddAllAsync(vs ...any) *Future[bool] {
	return keyed(o.b, decodePositive, "RPUSH", o.key, atLeastOne("List.AddAllAsync", len(vs)), vs...)
}

// GetAsync reads the element at index i (LINDEX); ErrNil when out of range.
func (o *List) GetAsync(i int64) *Future[string] {
	return keyed(o.b, decodeString, "LINDEX", o.key, nil, i)
}

// RangeAsync reads elements from..to, inclusive (LRANGE).
func (o *List) RangeAsync(from, to int64) *Future[[]string] {
	return keyed(o.b, decodeStrings, "LRANGE", o.key, nil, from, to)
}

// ReadAllAsync reads every element (LRANGE 0 -1).
func (o *List) ReadAllAsync() *Future[[]string] { return o.RangeAsync(0, -1) }

// SizeAsync returns the length (LLEN).
func (o *List) SizeAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "LLEN", o.key, nil)
}

// RemoveAsync removes up to count occurrences of v (LREM; 0 removes all); true
// when any was removed.
func (o *List) RemoveAsync(v any, count int64) *Future[bool] {
	return keyed(o.b, decodePositive, "LREM", o.key, nil, count, v)
}

// TrimAsync keeps only elements from..to (LTRIM).
func (o *List) TrimAsync(from, to int64) *Future[struct{}] {
	return keyed(o.b, decodeOK, "LTRIM", o.key, nil, from, to)
}

// Map is a hash (Redisson's RMap).
type Map struct{ object }

// Map returns the hash at key.
func (b *Batch) Map(key string) *Map { return &Map{object{b, key}} }

// FastPutAsync sets field (HSET); true when the field is new.
func (o *Map) FastPutAsync(field string, v any) *Future[bool] {
	return keyed(o.b, decodePositive, "HSET", o.key, nil, field, v)
}

// GetAsync reads field (HGET); ErrNil when missing.
func (o *Map) GetAsync(field string) *Future[string] {
	return keyed(o.b, decodeString, "HGET", o.key, nil, field)
}

// ReadAllMapAsync reads every field (HGETALL).
func (o *Map) ReadAllMapAsync() *Future[map[string]string] {
	return keyed(o.b, decodeStringMap, "HGETALL", o.key, nil)
}

// AddAndGetAsync adds d to field (HINCRBY) and returns the new value.
func (o *Map) AddAndGetAsync(field string, d int64) *Future[int64] {
	return keyed(o.b, decodeInt64, "HINCRBY", o.key, nil, field, d)
}

// FastRemoveAsync removes fields (HDEL) and returns how many existed.
func (o *Map) FastRemoveAsync(fields ...string) *Future[int64] {
	return keyed(o.b, decodeInt64, "HDEL", o.key, atLeastOne("Map.FastRemoveAsync", len(fields)), stringsAsArgs(fields)...)
}

// ContainsKeyAsync reports whether field exists (HEXISTS).
func (o *Map) ContainsKeyAsync(field string) *Future[bool] {
	return keyed(o.b, decodePositive, "HEXISTS", o.key, nil, field)
}

// SizeAsync returns the number of fields (HLEN).
func (o *Map) SizeAsync() *Future[int64] { return keyed(o.b, decodeInt64, "HLEN", o.key, nil) }

// Set is a set (Redisson's RSet).
type Set struct{ object }

// Set returns the set at key.
func (b *Batch) Set(key string) *Set { return &Set{object{b, key}} }

// AddAsync adds v (SADD); true when it was not there.
func (o *Set) AddAsync(v any) *Future[bool] {
	return keyed(o.b, decodePositive, "SADD", o.key, nil, v)
}

// AddAllAsync adds vs (one SADD); true when any was not there.
func (o *Set) AddAllAsync(vs ...any) *Future[bool] {
	return keyed(o.b, decodePositive, "SADD", o.key, atLeastOne("Set.AddAllAsync", len(vs)), vs...)
}

// RemoveAsync removes v (SREM); true when it was there.
func (o *Set) RemoveAsync(v any) *Future[bool] {
	return keyed(o.b, decodePositive, "SREM", o.key, nil, v)
}

// ContainsAsync reports whether v is a member (SISMEMBER).
func (o *Set) ContainsAsync(v any) *Future[bool] {
	return keyed(o.b, decodePositive, "SISMEMBER", o.key, nil, v)
}

// ReadAllAsync reads every member (SMEMBERS), in no particular order.
func (o *Set) ReadAllAsync() *Future[[]string] {
	return keyed(o.b, decodeStrings, "SMEMBERS", o.key, nil)
}

// SizeAsync returns the number of members (SCARD).
func (o *Set) SizeAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "SCARD", o.key, nil)
}

// ScoredSortedSet is a sorted set (Redisson's RScoredSortedSet).
type ScoredSortedSet struct{ object }

// ScoredSortedSet returns the sorted set at key.
func (b *Batch) ScoredSortedSet(key string) *ScoredSortedSet {
	return &ScoredSortedSet{object{b, key}}
}

// AddAsync adds v with score (ZADD); true when v is new. ±Inf are valid
// scores; NaN fails the batch.
func (o *ScoredSortedSet) AddAsync(score float64, v any) *Future[bool] {
	return keyed(o.b, decodePositive, "ZADD", o.key, checkScore("score", score), score, v)
}

// AddScoreAsync adds d to v's score (ZINCRBY) and returns the new score.
func (o *ScoredSortedSet) AddScoreAsync(v any, d float64) *Future[float64] {
	return keyed(o.b, decodeFloat, "ZINCRBY", o.key, checkScore("increment", d), d, v)
}

// GetScoreAsync reads v's score (ZSCORE); ErrNil when v is not a member.
func (o *ScoredSortedSet) GetScoreAsync(v any) *Future[float64] {
	return keyed(o.b, decodeFloat, "ZSCORE", o.key, nil, v)
}

// RankAsync returns v's 0-based rank by ascending score (ZRANK); ErrNil when
// v is not a member.
func (o *ScoredSortedSet) RankAsync(v any) *Future[int64] {
	return keyed(o.b, decodeInt64, "ZRANK", o.key, nil, v)
}

// ValueRangeAsync reads members by rank start..end, inclusive (ZRANGE).
func (o *ScoredSortedSet) ValueRangeAsync(start, end int64) *Future[[]string] {
	return keyed(o.b, decodeStrings, "ZRANGE", o.key, nil, start, end)
}

// SizeAsync returns the number of members (ZCARD).
func (o *ScoredSortedSet) SizeAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "ZCARD", o.key, nil)
}

// Queue is a FIFO queue on a list (Redisson's RQueue).
type Queue struct{ object }

// Queue returns the queue at key.
func (b *Batch) Queue(key string) *Queue { return &Queue{object{b, key}} }

// OfferAsync appends v at the tail (RPUSH).
func (o *Queue) OfferAsync(v any) *Future[bool] {
	return keyed(o.b, decodePositive, "RPUSH", o.key, nil, v)
}

// PollAsync removes and returns the head (LPOP); ErrNil when empty.
func (o *Queue) PollAsync() *Future[string] {
	return keyed(o.b, decodeString, "LPOP", o.key, nil)
}

// PeekAsync returns the head without removing it (LINDEX 0); ErrNil when empty.
func (o *Queue) PeekAsync() *Future[string] {
	return keyed(o.b, decodeString, "LINDEX", o.key, nil, 0)
}

// SizeAsync returns the length (LLEN).
func (o *Queue) SizeAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "LLEN", o.key, nil)
}

// Deque is a double-ended queue on a list (Redisson's RDeque).
type Deque struct{ Queue }

// Deque returns the deque at key.
func (b *Batch) Deque(key string) *Deque { return &Deque{Queue{object{b, key}}} }

// AddFirstAsync inserts v at the head (LPUSH).
func (o *Deque) AddFirstAsync(v any) *Future[struct{}] {
	return keyed(o.b, decodeAdded, "LPUSH", o.key, nil, v)
}

// AddLastAsync appends v at the tail (RPUSH).
func (o *Deque) AddLastAsync(v any) *Future[struct{}] {
	return keyed(o.b, decodeAdded, "RPUSH", o.key, nil, v)
}

// PollFirstAsync removes and returns the head (LPOP); ErrNil when empty.
func (o *Deque) PollFirstAsync() *Future[string] { return o.PollAsync() }

// PollLastAsync removes and returns the tail (RPOP); ErrNil when empty.
func (o *Deque) PollLastAsync() *Future[string] {
	return keyed(o.b, decodeString, "RPOP", o.key, nil)
}

// Stream is a stream (Redisson's RStream). Through twemproxy, which takes no
// stream command, its stream methods (XADD, XLEN, XRANGE, XREAD) fail alone
// with ErrUnsupported, not sent; the key's own (DeleteAsync, …) work.
type Stream struct{ object }

// Stream returns the stream at key.
func (b *Batch) Stream(key string) *Stream { return &Stream{object{b, key}} }

// AddAsync appends an entry of field/value pairs (XADD key * …) and returns
// its ID.
func (o *Stream) AddAsync(fields ...any) *Future[string] {
	var err error
	switch {
	case len(fields) == 0:
		err = errors.New("Stream.AddAsync needs at least one field/value pair")
	case len(fields)%2 != 0:
		err = fmt.Errorf("Stream.AddAsync needs field/value pairs, got %d arguments", len(fields))
	}
	args := make([]any, 0, len(fields)+1)
	args = append(args, "*")
	return keyed(o.b, decodeString, "XADD", o.key, err, append(args, fields...)...)
}

// SizeAsync returns the number of entries (XLEN).
func (o *Stream) SizeAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "XLEN", o.key, nil)
}

// HyperLogLog is a cardinality estimator (Redisson's RHyperLogLog).
type HyperLogLog struct{ object }

// HyperLogLog returns the HyperLogLog at key.
func (b *Batch) HyperLogLog(key string) *HyperLogLog { return &HyperLogLog{object{b, key}} }

// AddAsync adds v (PFADD); true when the estimate changed.
func (o *HyperLogLog) AddAsync(v any) *Future[bool] {
	return keyed(o.b, decodePositive, "PFADD", o.key, nil, v)
}

// CountAsync returns the estimated cardinality (PFCOUNT).
func (o *HyperLogLog) CountAsync() *Future[int64] {
	return keyed(o.b, decodeInt64, "PFCOUNT", o.key, nil)
}

// Keys acts on several keys at once (Redisson's RKeys).
type Keys struct{ b *Batch }

// Keys returns the multi-key commands.
func (b *Batch) Keys() *Keys { return &Keys{b} }

// DeleteAsync deletes keys (DEL) and returns how many existed.
func (o *Keys) DeleteAsync(keys ...string) *Future[int64] {
	return enqueue(o.b, decodeInt64, "DEL", firstKeyArg(keys, 1), atLeastOne("Keys.DeleteAsync", len(keys)), stringsAsArgs(keys)...)
}

// CountExistsAsync returns how many of keys exist (EXISTS). In a cluster
// the keys are split per slot, through twemproxy (which sends EXISTS whole
// to one server) one EXISTS per key, and the counts summed.
func (o *Keys) CountExistsAsync(keys ...string) *Future[int64] {
	return enqueue(o.b, decodeInt64, "EXISTS", firstKeyArg(keys, 1), atLeastOne("Keys.CountExistsAsync", len(keys)), stringsAsArgs(keys)...)
}

// decodeAdded is for pushes whose length reply is of no interest.
func decodeAdded(reply any) (struct{}, error) {
	_, err := decodeInt64(reply)
	return struct{}{}, err
}

// firstKeyArg returns pos, the argument position of keys[0], or 0 (no key)
// when keys is empty.
func firstKeyArg(keys []string, pos int) int {
	if len(keys) == 0 {
		return 0
	}
	return pos
}

func stringsAsArgs(ss []string) []any {
	args := make([]any, len(ss))
	for i, s := range ss {
		args[i] = s
	}
	return args
}
