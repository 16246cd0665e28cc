package queue

import (
	"errors"
	"strings"
)

// Flags describe a command's nature, from the command table.
type Flags uint8

const (
	// ReadOnly commands change nothing: they may run on a replica, in a
	// RedisReadAtomic batch, and be re-sent when their outcome is unknown.
	ReadOnly Flags = 1 << iota
	// NoKey commands name no key; in a cluster any node may run them.
	NoKey
	// MultiKey commands take only keys as arguments (DEL, EXISTS, MGET, …):
	// in a cluster they are split per slot.
	MultiKey
	// KeyValue commands take key/value pairs (MSET): in a cluster they are
	// split per slot, a pair at a time.
	KeyValue
	// OwnConn commands need a connection of their own: they block it
	// (BLPOP, …) or change its state (CLIENT SETNAME, READONLY, …), so a
	// batch holding one never shares its connection with other batches.
	OwnConn
)

// ErrForbidden is the cause when a command may not be queued in a batch.
var ErrForbidden = errors.New("command not allowed in a batch")

// readOnly lists the read-only commands rbatch knows. Anything else counts as
// a write: unknown commands are never retried or sent to a replica.
var readOnly = set(
	"GET", "MGET", "GETRANGE", "STRLEN", "EXISTS", "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "TYPE",
	"LRANGE", "LINDEX", "LLEN", "LPOS",
	"HGET", "HMGET", "HGETALL", "HEXISTS", "HLEN", "HKEYS", "HVALS", "HSTRLEN", "HRANDFIELD", "HSCAN",
	"SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SRANDMEMBER", "SINTER", "SUNION", "SDIFF", "SINTERCARD", "SSCAN",
	"ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE",
	"ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANDMEMBER", "ZSCAN",
	"XLEN", "XRANGE", "XREVRANGE", "XREAD", "XINFO", "XPENDING",
	"PFCOUNT", "GETBIT", "BITCOUNT", "BITPOS", "GEOPOS", "GEODIST", "GEOHASH", "GEOSEARCH",
	"DBSIZE", "PING", "ECHO", "TIME", "RANDOMKEY", "SCAN", "KEYS", "DUMP", "TOUCH", "OBJECT", "MEMORY",
	"EVAL_RO", "EVALSHA_RO", "FCALL_RO",
	"SORT_RO", "GEORADIUS_RO", "GEORADIUSBYMEMBER_RO", "LCS", "SUBSTR", "BITFIELD_RO",
	"ZDIFF", "ZINTER", "ZUNION", "ZINTERCARD",
)

// noKey lists commands whose first argument is not a key.
var noKey = set("PING", "ECHO", "TIME", "DBSIZE", "RANDOMKEY", "SCAN", "KEYS", "INFO", "FLUSHDB", "FLUSHALL",
	"SCRIPT", "FUNCTION", "CONFIG", "CLIENT", "COMMAND", "LASTSAVE")

// multiKey lists commands whose arguments are all keys.
var multiKey = set("DEL", "UNLINK", "EXISTS", "TOUCH", "MGET")

// keyValue lists commands whose arguments are key/value pairs and that may
// be split per slot (not MSETNX: it must set all keys or none).
var keyValue = set("MSET")

// forbidden lists commands that would change what the connection is, or that
// the execution modes own.
var forbidden = map[string]string{
	"SUBSCRIBE": "it turns the connection into a subscriber", "PSUBSCRIBE": "it turns the connection into a subscriber",
	"SSUBSCRIBE": "it turns the connection into a subscriber", "UNSUBSCRIBE": "it belongs to a subscriber connection",
	"PUNSUBSCRIBE": "it belongs to a subscriber connection", "SUNSUBSCRIBE": "it belongs to a subscriber connection",
	"MONITOR": "it turns the connection into a monitor",
	"MULTI":   "transactions are set by the execution mode", "EXEC": "transactions are set by the execution mode",
	"DISCARD": "transactions are set by the execution mode", "WATCH": "transactions are set by the execution mode",
	"UNWATCH": "transactions are set by the execution mode",
	"SELECT":  "it changes the connection's database (set Config.DB)", "SWAPDB": "it changes the connection's database",
	"AUTH": "it changes the connection's user (set Config.Username/Password)", "HELLO": "it changes the connection's protocol",
	"RESET": "it resets the connection", "QUIT": "it closes the connection",
	"SYNC": "it turns the connection into a replication stream", "PSYNC": "it turns the connection into a replication stream",
	"WAIT": "replica sync is set by WithSync", "WAITAOF": "AOF sync is set by WithSyncAOF",
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// Lookup normalizes a command name to upper case and returns its flags, or an
// error naming why it may not be queued. sub is the first argument, used for
// container commands such as CLIENT REPLY.
func Lookup(name, sub string) (string, Flags, error) {
	name = strings.ToUpper(strings.TrimSpace(name))
	if name == "" {
		return name, 0, errors.New("empty command name")
	}
	if why, ok := forbidden[name]; ok {
		return name, 0, &forbiddenError{name: name, why: why}
	}
	if name == "CLIENT" && strings.EqualFold(sub, "REPLY") {
		return name, 0, &forbiddenError{name: "CLIENT REPLY", why: "skipping replies is set by WithSkipResult"}
	}
	if name == "CLIENT" && strings.EqualFold(sub, "TRACKING") {
		return name, 0, &forbiddenError{name: "CLIENT TRACKING", why: "it makes the connection receive invalidation messages"}
	}
	if name == "SCRIPT" && strings.EqualFold(sub, "DEBUG") {
		return name, 0, &forbiddenError{name: "SCRIPT DEBUG", why: "it puts the connection in Lua debugging mode"}
	}
	return name, FlagsOf(name), nil
}

type forbiddenError struct{ name, why string }

func (e *forbiddenError) Error() string { return e.name + " is not allowed in a batch: " + e.why }
func (e *forbiddenError) Unwrap() error { return ErrForbidden }

// FlagsOf returns the flags of an upper-case command name.
func FlagsOf(name string) Flags { return flags[name] }

// writes lists write commands the batch objects send, which have no flags:
// they are named here so that reading their names back from an encoding
// shares one string (see interned).
var writes = set("SET", "GETSET", "INCR", "INCRBY", "DECR", "PEXPIRE", "SADD", "SREM", "HSET", "HDEL",
	"HINCRBY", "LPUSH", "RPUSH", "LPOP", "RPOP", "LREM", "LTRIM", "ZADD", "ZINCRBY", "ZREM", "PFADD",
	"XADD", "EVAL", "EVALSHA", "SCRIPT", "MSETNX", "HSETNX")

// ownConn lists the commands that need a connection of their own. XREAD
// and XREADGROUP do when they carry BLOCK (see Blocks).
var ownConn = set("BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
	"CLIENT", "READONLY", "READWRITE", "ASKING")

// Blocks reports whether an XREAD or XREADGROUP with arguments args
// blocks (carries BLOCK).
func Blocks(name string, args []string) bool {
	if name != "XREAD" && name != "XREADGROUP" {
		return false
	}
	for _, a := range args {
		if strings.EqualFold(a, "BLOCK") {
			return true
		}
	}
	return false
}

// flags is the command table: every command named above, with its flags.
var flags = func() map[string]Flags {
	m := map[string]Flags{}
	for set, f := range map[*map[string]bool]Flags{&readOnly: ReadOnly, &noKey: NoKey, &multiKey: MultiKey, &keyValue: KeyValue, &writes: 0, &ownConn: OwnConn} {
		for name := range *set {
			m[name] |= f
		}
	}
	return m
}()

// interned maps each name of the command table to itself.
var interned = func() map[string]string {
	m := make(map[string]string, len(flags))
	for name := range flags {
		m[name] = name
	}
	return m
}()

// nameOf returns name as a string, shared for the names of the table.
func nameOf(name []byte) string {
	if s, ok := interned[string(name)]; ok {
		return s
	}
	return string(name)
}
