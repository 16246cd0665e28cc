package redistest

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

func TestTLSStandalone(t *testing.T) {
	t.Parallel()
	certs := NewTLSCerts(t)
	s := TLSStandalone(t, certs)

	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING over TLS = %v", got)
	}
	if got := s.Info(t, "server")["process_id"]; got == "" || s.PID() <= 0 {
		t.Fatalf("process_id = %q, PID = %d", got, s.PID())
	}
	ports, err := redis.Strings(s.Call("CONFIG", "GET", "port"))
	if err != nil || len(ports) != 2 || ports[1] != "0" {
		t.Fatalf("CONFIG GET port = %q, %v; want 0 (TLS only)", ports, err)
	}
	s.MustDo(t, "SET", "k", "v")
	if got := s.CommandStats(t)["set"]; got != 1 {
		t.Fatalf("set calls = %d, want 1", got)
	}

	// Plain TCP is not served.
	c, err := redis.Dial("tcp", s.Addr, redis.DialReadTimeout(2*time.Second))
	if err == nil {
		_, err = c.Do("PING")
		c.Close()
	}
	if err == nil {
		t.Fatal("plain-TCP PING to a TLS-only server succeeded")
	}
	// A client that does not trust the CA is refused.
	_, err = redis.Dial("tcp", s.Addr, redis.DialUseTLS(true), redis.DialTLSConfig(&tls.Config{}))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("TLS dial without the CA: %v, want a certificate error", err)
	}
}

func TestTLSCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts six servers")
	}
	certs := NewTLSCerts(t)
	c := NewTLSCluster(t, certs)
	if len(c.Primaries) != 3 || len(c.Replicas) != 3 {
		t.Fatalf("%d primaries, %d replicas", len(c.Primaries), len(c.Replicas))
	}
	for _, s := range c.Nodes() {
		v, err := redis.Strings(s.Call("CONFIG", "GET", "tls-cluster"))
		if err != nil || len(v) != 2 || v[1] != "yes" {
			t.Fatalf("%s: CONFIG GET tls-cluster = %q, %v", s.Addr, v, err)
		}
	}
	// A key written on its owner reaches the owner's replica over TLS replication.
	owner := c.OwnerOf(t, 0) // slot 0 is primary 0's
	if owner != c.Primaries[0] {
		t.Fatalf("slot 0 owned by %s, want %s", owner.Addr, c.Primaries[0].Addr)
	}
	key := "{06S}k" // slot 0
	if got, _ := redis.Int(owner.Call("CLUSTER", "KEYSLOT", key)); got != 0 {
		t.Fatalf("KEYSLOT %s = %d", key, got)
	}
	owner.MustDo(t, "SET", key, "v")
	if n, err := redis.Int(owner.Call("WAIT", 1, 5000)); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	if v, err := redis.String(c.Replicas[0].Call("GET", key)); err == nil {
		t.Fatalf("GET on a replica without READONLY answered %q", v)
	}
	c.FlushAll(t)
	c.ResetStats(t)
	if got := c.CommandStats(t)["set"]; got != 0 {
		t.Fatalf("set calls after ResetStats = %d", got)
	}
}
