package rbatch

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	"github.com/rbatch/rbatch/internal/resp"
)

// Script runs Lua scripts (Redisson's RScript).
type Script struct{ b *Batch }

// Script returns the script runner.
func (b *Batch) Script() *Script { return &Script{b} }

// EvalAsync runs script with keys and args; the reply comes as Redis gave
// it (int64, string, []any, nil). It is sent as EVALSHA; a node that does
// not hold the script (never given it, SCRIPT FLUSH, a restart, a failover
// to a replica that never ran it) answers NOSCRIPT, which means the script
// did not run, and rbatch sends that command again as EVAL with the body,
// once. EVAL leaves the script in the node's cache, so later batches'
// EVALSHAs find it.
//
// Sending it again puts it after the commands queued behind it on the
// node, so only a batch whose one script is the last of its commands on
// that node relies on the cache. Every other batch with a script sends a
// SCRIPT LOAD of each of its scripts before its commands on each node, as a
// transaction (InMemoryAtomic) and a skip-result batch always do: a
// NOSCRIPT inside EXEC cannot be sent again without breaking the
// transaction, and one whose reply is skipped would go unseen. In
// RedisReadAtomic and RedisWriteAtomic, and through a proxy, scripts are
// sent as EVAL with their body. In a cluster a script is routed by its
// first key.
func (s *Script) EvalAsync(script string, keys []string, args ...any) *Future[any] {
	return eval(s.b, decodeAny, script, keys, args)
}

// EvalIntAsync is EvalAsync for a script that returns an integer.
func (s *Script) EvalIntAsync(script string, keys []string, args ...any) *Future[int64] {
	return eval(s.b, decodeInt64, script, keys, args)
}

// EvalStringAsync is EvalAsync for a script that returns a string; a nil
// reply (Lua false) fails with ErrNil.
func (s *Script) EvalStringAsync(script string, keys []string, args ...any) *Future[string] {
	return eval(s.b, decodeString, script, keys, args)
}

// EvalStringsAsync is EvalAsync for a script that returns an array of
// strings (integers among them are formatted, nil entries are "").
func (s *Script) EvalStringsAsync(script string, keys []string, args ...any) *Future[[]string] {
	return eval(s.b, decodeStrings, script, keys, args)
}

func eval[T any](b *Batch, dec func(any) (T, error), script string, keys []string, args []any) *Future[T] {
	if b.opts.Mode.redisSide() || b.c.info.Proxy {
		// Inside the open MULTI there is no room to load the script first;
		// a proxy closes the connection on SCRIPT LOAD, and on EVAL without
		// a key to route it by.
		var argErr error
		if b.c.info.Proxy && len(keys) == 0 {
			argErr = fmt.Errorf("rbatch: a script without keys cannot be routed by a proxy: %w", ErrUnsupported)
		}
		return enqueue(b, dec, "EVAL", firstKeyArg(keys, evalFirstKey), argErr, evalArgs(script, keys, args)...)
	}
	sum := sha1.Sum([]byte(script))
	sha := hex.EncodeToString(sum[:])
	if b.stream != nil {
		b.stream.addScript(sha, script)
		return enqueue(b, dec, "EVALSHA", firstKeyArg(keys, evalFirstKey), nil, evalArgs(sha, keys, args)...)
	}
	b.mu.Lock()
	if b.state == open {
		if b.scripts == nil {
			b.scripts = make(map[string]string)
		}
		b.scripts[sha] = script
	}
	b.mu.Unlock()
	return enqueue(b, dec, "EVALSHA", firstKeyArg(keys, evalFirstKey), nil, evalArgs(sha, keys, args)...)
}

// evalFirstKey is the position of the first key among EVAL's arguments.
const evalFirstKey = 3

// evalArgs lays out EVAL/EVALSHA's arguments: script or SHA1, numkeys, keys, args.
func evalArgs(script string, keys []string, args []any) []any {
	all := make([]any, 0, 2+len(keys)+len(args))
	all = append(all, script, strconv.Itoa(len(keys)))
	for _, k := range keys {
		all = append(all, k)
	}
	return append(all, args...)
}

// scriptLoads returns the SCRIPT LOADs the group of idx needs, in the
// order of their SHA1s: none when a NOSCRIPT can be answered by sending the
// EVALSHA again, as EVAL (see trustsCache), else one for each script its
// EVALSHAs run.
func (b *Batch) scriptLoads(idx []int) (loads [][]byte, shas []string) {
	// A stream's part loads them always: the next part may follow it on
	// the connection before a NOSCRIPT is read.
	if len(b.scripts) == 0 || !(b.plan.Atomic || b.plan.SkipResult || b.segment || !trustsCache(b, idx)) {
		return nil, nil
	}
	for _, i := range idx {
		if b.q.Name(i) != "EVALSHA" {
			continue
		}
		if sha := string(b.q.Args(i)[0]); !slices.Contains(shas, sha) {
			shas = append(shas, sha)
		}
	}
	slices.Sort(shas)
	for _, sha := range shas {
		cmd, _ := resp.AppendCommand(nil, nil, "SCRIPT", "LOAD", b.scripts[sha])
		loads = append(loads, cmd)
	}
	return loads, shas
}

// trustsCache reports whether the group of idx may rely on the node's
// script cache. An EVALSHA the node does not hold is sent again (as EVAL)
// after the rest of its group ran, which keeps submission order only when
// nothing of the group follows it: so the cache is trusted for a group
// whose one EVALSHA is its last command, and any other group loads all its
// scripts first.
func trustsCache(b *Batch, idx []int) bool {
	for k, i := range idx {
		if b.q.Name(i) == "EVALSHA" {
			return k == len(idx)-1
		}
	}
	return true
}

// scriptsLoaded gives each EVALSHA of idx whose script failed to load
// (a compile error), by the replies to the SCRIPT LOADs of shas, that error
// instead of NOSCRIPT. It returns the SHA1s that failed.
func (b *Batch) scriptsLoaded(idx []int, shas []string, replies []any) map[string]error {
	var failed map[string]error
	for k, r := range replies {
		if k >= len(shas) {
			break
		}
		if err := redisErrorOf(r); err != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[shas[k]] = fmt.Errorf("loading the script: %w", err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	for _, i := range idx {
		if b.q.Name(i) != "EVALSHA" {
			continue
		}
		if err, ok := failed[string(b.q.Args(i)[0])]; ok {
			b.q.At(i).Future.(outcome).resolve(nil, err)
		}
	}
	return failed
}

// noScript returns the EVALSHAs among errs the node answered NOSCRIPT for
// although their scripts did not fail to load: the node does not hold them.
// None when the group was already such a second try.
func (b *Batch) noScript(e *entry, errs []errReply, failed map[string]error) []int {
	var again []int
	for _, er := range errs {
		re := asRedisError(er.err)
		if e.reloaded || re == nil || re.Prefix() != "NOSCRIPT" || b.q.Name(er.index) != "EVALSHA" {
			continue
		}
		if _, bad := failed[string(b.q.Args(er.index)[0])]; !bad {
			again = append(again, er.index)
		}
	}
	return again
}

// asEval re-encodes each EVALSHA of idx as the EVAL of its script, to be
// sent again to a node that answered NOSCRIPT.
func (b *Batch) asEval(idx []int) {
	for _, i := range idx {
		if b.q.Name(i) != "EVALSHA" {
			continue
		}
		args := b.q.Args(i)
		body, ok := b.scripts[string(args[0])]
		if !ok {
			continue // (every EVALSHA queued has its body there)
		}
		all := make([]any, len(args))
		all[0] = body
		for k, a := range args[1:] {
			all[k+1] = a
		}
		if enc, err := resp.AppendCommand(nil, nil, "EVAL", all...); err == nil {
			b.q.Reencode(i, enc)
		}
	}
}
