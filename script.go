package rbatch

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"

	"github.com/rbatch/rbatch/queue"
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
	if s.b.opts.Mode.redisSide() {
		// Inside the open MULTI there is no room to load the script first.
		return enqueue(s.b, decodeAny, "EVAL", firstKey(keys), nil, evalArgs(script, keys, args)...)
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
	return enqueue(s.b, decodeAny, "EVALSHA", firstKey(keys), nil, evalArgs(sha, keys, args)...)
}

// evalArgs lays out EVAL/EVALSHA's arguments: script or SHA1, numkeys, keys, args.
func evalArgs(script string, keys []string, args []any) []any {
	all := make([]any, 0, 2+len(keys)+len(args))
	all = append(all, script, strconv.Itoa(len(keys)))
	for _, k := range keys {
		all = append(all, k)
	}
	return append(all, args...)
}

// scriptLoads returns the SCRIPT LOAD commands for the batch's scripts.
func (b *Batch) scriptLoads() [][]byte {
	if len(b.scripts) == 0 {
		return nil
	}
	loads := make([][]byte, 0, len(b.scripts))
	for _, body := range b.scripts {
		cmd, _ := queue.AppendCommand(nil, nil, "SCRIPT", "LOAD", body)
		loads = append(loads, cmd)
	}
	return loads
}
