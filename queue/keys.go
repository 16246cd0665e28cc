package queue

import (
	"strconv"
	"strings"
)

// keyLayout says where a command's keys are among its arguments, for the
// commands with more than one key: a cluster transaction checks each of
// them against its slot, so that a second key in another slot is refused
// before anything is sent instead of aborting the transaction in Redis.
type keyLayout uint8

const (
	allArgs      keyLayout = iota + 1 // every argument (SINTER, PFMERGE, …)
	pairs                             // key, value, … (MSET, MSETNX)
	firstTwo                          // source and destination (RENAME, LMOVE, COPY, …)
	countAt0                          // numkeys, key… (SINTERCARD, ZUNION, …)
	countAt1                          // script or timeout, numkeys, key… (EVAL, BLMPOP, …)
	destCountAt1                      // destination, numkeys, key… (ZUNIONSTORE, …)
	afterFirst                        // an operation, then keys (BITOP)
	butLast                           // keys, then a timeout (BLPOP, BZPOPMIN, …)
	streams                           // options, STREAMS key… id… (XREAD, XREADGROUP)
	storeOption                       // key, options, STORE key (SORT, GEORADIUS)
)

var keyLayouts = func() map[string]keyLayout {
	m := map[string]keyLayout{}
	for layout, names := range map[keyLayout][]string{
		allArgs:      {"SINTER", "SUNION", "SDIFF", "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "PFMERGE", "PFCOUNT"},
		pairs:        {"MSETNX"},
		firstTwo:     {"RENAME", "RENAMENX", "SMOVE", "LMOVE", "BLMOVE", "RPOPLPUSH", "BRPOPLPUSH", "COPY", "LCS", "ZRANGESTORE", "GEOSEARCHSTORE"},
		countAt0:     {"SINTERCARD", "ZINTERCARD", "ZDIFF", "ZINTER", "ZUNION", "LMPOP", "ZMPOP"},
		countAt1:     {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO", "BLMPOP", "BZMPOP"},
		destCountAt1: {"ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"},
		afterFirst:   {"BITOP"},
		butLast:      {"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"},
		streams:      {"XREAD", "XREADGROUP"},
		storeOption:  {"SORT", "GEORADIUS", "GEORADIUSBYMEMBER"},
	} {
		for _, name := range names {
			m[name] = layout
		}
	}
	return m
}()

// KeysKnown reports whether EachKey finds the keys of the upper-case
// command name (flags f) among its arguments; for the others the routing
// key is the only key.
func KeysKnown(name []byte, f Flags) bool {
	return f&(MultiKey|KeyValue) != 0 || keyLayouts[string(name)] != 0
}

// EachKey calls fn with each key among args, the arguments (without the
// name) of a command for which KeysKnown, up to fn's first error. A count
// of keys that is not a number gives no keys: Redis refuses the command.
func EachKey(name []byte, f Flags, args [][]byte, fn func(key []byte) error) error {
	var runs [2]struct{ from, to, step int }
	n := 0
	add := func(from, to, step int) {
		runs[n].from, runs[n].to, runs[n].step = from, min(to, len(args)), step
		n++
	}
	counted := func(at int) { // numkeys at args[at], the keys after it
		k := 0
		if at < len(args) {
			k, _ = strconv.Atoi(string(args[at]))
		}
		add(at+1, at+1+max(k, 0), 1)
	}
	layout := keyLayouts[string(name)]
	switch {
	case f&KeyValue != 0:
		layout = pairs
	case f&MultiKey != 0:
		layout = allArgs
	}
	switch layout {
	case allArgs:
		add(0, len(args), 1)
	case pairs:
		add(0, len(args), 2)
	case firstTwo:
		add(0, 2, 1)
	case countAt0:
		counted(0)
	case countAt1:
		counted(1)
	case destCountAt1:
		add(0, 1, 1)
		counted(1)
	case afterFirst:
		add(1, len(args), 1)
	case butLast:
		add(0, len(args)-1, 1)
	case streams:
		if at := streamsAt(args); at >= 0 {
			add(at+1, at+1+(len(args)-at-1)/2, 1)
		}
	case storeOption:
		add(0, 1, 1)
		if at := storeAt(string(name), args); at >= 0 {
			add(at, at+1, 1)
		}
	}
	for _, r := range runs[:n] {
		for k := r.from; k < r.to; k += r.step {
			if err := fn(args[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// streamsAt is the position of XREAD's (or XREADGROUP's) STREAMS among
// args, skipping the options before it (a group or consumer may be named
// STREAMS); -1 when there is none.
func streamsAt(args [][]byte) int {
	for k := 0; k < len(args); {
		switch strings.ToUpper(string(args[k])) {
		case "STREAMS":
			return k
		case "GROUP":
			k += 3
		case "COUNT", "BLOCK":
			k += 2
		default: // NOACK, or an option Redis refuses
			k++
		}
	}
	return -1
}

// storeAt is the position of the key that SORT's or GEORADIUS's STORE (or
// STOREDIST) names among args; -1 when it stores nothing.
func storeAt(name string, args [][]byte) int {
	k := 5 // GEORADIUS key longitude latitude radius unit
	switch name {
	case "SORT":
		k = 1
	case "GEORADIUSBYMEMBER": // key member radius unit
		k = 4
	}
	for k < len(args) {
		switch strings.ToUpper(string(args[k])) {
		case "STORE", "STOREDIST":
			if k+1 < len(args) {
				return k + 1
			}
			return -1
		case "BY", "GET": // SORT's patterns, which may read STORE
			k += 2
		case "LIMIT":
			k += 3
		default:
			k++
		}
	}
	return -1
}
