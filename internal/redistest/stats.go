package redistest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// ParseInfo parses the text of an INFO reply into a map of field to value.
// Section headers ("# Server") and blank lines are skipped; a field whose
// name appears in several sections keeps its last value.
func ParseInfo(info string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		m[k] = v
	}
	return m
}

// ParseCommandStats parses the text of an INFO commandstats reply into a map
// from lower-case command name to its number of calls. Subcommands are named
// as Redis names them, e.g. "client|reply" or "config|resetstat".
func ParseCommandStats(info string) map[string]int64 {
	stats := make(map[string]int64)
	for k, v := range ParseInfo(info) {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		for _, field := range strings.Split(v, ",") {
			calls, ok := strings.CutPrefix(field, "calls=")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(calls, 10, 64)
			if err == nil {
				stats[strings.ToLower(name)] = n
			}
		}
	}
	return stats
}

// FetchInfo runs INFO section and parses the reply with ParseInfo.
func (s *Server) FetchInfo(section string) (map[string]string, error) {
	args := []any{}
	if section != "" {
		args = append(args, section)
	}
	info, err := redis.String(s.Call("INFO", args...))
	if err != nil {
		return nil, fmt.Errorf("redistest: INFO %s on %s: %w", section, s.Addr, err)
	}
	return ParseInfo(info), nil
}

// FetchCommandStats runs INFO commandstats and parses the reply with
// ParseCommandStats.
func (s *Server) FetchCommandStats() (map[string]int64, error) {
	info, err := redis.String(s.Call("INFO", "commandstats"))
	if err != nil {
		return nil, fmt.Errorf("redistest: INFO commandstats on %s: %w", s.Addr, err)
	}
	return ParseCommandStats(info), nil
}

// Info returns the fields of INFO section (all default sections if section
// is empty), failing the test on error.
func (s *Server) Info(t testing.TB, section string) map[string]string {
	t.Helper()
	m, err := s.FetchInfo(section)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// CommandStats returns how often each command has been called since the
// server started or its statistics were last reset (see ResetStats): the key
// is the lower-case command name ("set", "multi", "exec", "client|reply"),
// the value its calls= count. Commands that were never called are absent.
//
// A new or restarted server starts with empty statistics apart from one
// "config|resetstat" call. The helper's own commands count too: the INFO that reads the statistics
// is not included in its own reply, but earlier INFO, PING, FLUSHALL or
// CONFIG calls made through this package are.
func (s *Server) CommandStats(t testing.TB) map[string]int64 {
	t.Helper()
	m, err := s.FetchCommandStats()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
