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

// EvalAsync runs script with keys and args. It is sent as EVALSHA; each node
// that runs scripts first gets a SCRIPT LOAD of them in the same pipeline,
// so a server that never saw the script does not answer NOSCRIPT and the
// body travels once per node rather than once per call. In a cluster the
// script is routed by its first key.
func (s *Script) EvalAsync(script string, keys []string, args ...any) *Future[any] {
	if s.b.opts.Mode.redisSide() || s.b.c.info.Proxy {
		// Inside the open MULTI there is no room to load the script first;
		// a proxy closes the connection on SCRIPT LOAD, and on EVAL without
		// a key to route it by.
		var argErr error
		if s.b.c.info.Proxy && len(keys) == 0 {
			argErr = fmt.Errorf("rbatch: a script without keys cannot be routed by a proxy: %w", ErrUnsupported)
		}
		return enqueue(s.b, decodeAny, "EVAL", firstKeyArg(keys, evalFirstKey), argErr, evalArgs(script, keys, args)...)
	}
	sum := sha1.Sum([]byte(script))
	sha := hex.EncodeToString(sum[:])
	s.b.mu.Lock()
	if s.b.state == open {
		if s.b.scripts == nil {
			s.b.scripts = make(map[string]string)
		}
		s.b.scripts[sha] = script
	}
	s.b.mu.Unlock()
	return enqueue(s.b, decodeAny, "EVALSHA", firstKeyArg(keys, evalFirstKey), nil, evalArgs(sha, keys, args)...)
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

// scriptLoads returns the SCRIPT LOAD commands for the batch's scripts, in
// the order of their SHA1s.
func (b *Batch) scriptLoads() (loads [][]byte, shas []string) {
	for sha := range b.scripts {
		shas = append(shas, sha)
	}
	slices.Sort(shas)
	for _, sha := range shas {
		cmd, _ := resp.AppendCommand(nil, nil, "SCRIPT", "LOAD", b.scripts[sha])
		loads = append(loads, cmd)
	}
	return loads, shas
}

// scriptFailures gives each EVALSHA of idx whose script failed to load
// (a compile error) that error instead of NOSCRIPT. loaded holds the replies
// to the SCRIPT LOADs of shas.
func (b *Batch) scriptFailures(idx []int, shas []string, loaded []any) {
	failed := map[string]error{}
	for k, r := range loaded {
		if err := redisErrorOf(r); err != nil && k < len(shas) {
			failed[shas[k]] = fmt.Errorf("loading the script: %w", err)
		}
	}
	if len(failed) == 0 {
		return
	}
	for _, i := range idx {
		if b.q.Name(i) != "EVALSHA" {
			continue
		}
		if err, ok := failed[string(b.q.Args(i)[0])]; ok {
			b.q.At(i).Future.(outcome).resolve(nil, err)
		}
	}
}
