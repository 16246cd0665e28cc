package redistest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ReplicationTimeout bounds how long the helpers wait for a replica to
// attach to its primary.
const ReplicationTimeout = 15 * time.Second

// StartPrimaryReplica starts a primary and one replica of it (started with
// --replicaof 127.0.0.1 <primary port>), and waits until the replica's link
// is up and the primary counts one connected replica. Extra args are passed
// to both servers. The caller must Close both.
func StartPrimaryReplica(args ...string) (primary, replica *Server, err error) {
	primary, err = StartStandalone(args...)
	if err != nil {
		return nil, nil, err
	}
	replica, err = StartStandalone(append([]string{
		"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port),
	}, args...)...)
	if err != nil {
		_ = primary.Close()
		return nil, nil, err
	}
	if err := waitReplicas(ReplicationTimeout, map[*Server]*Server{replica: primary}); err != nil {
		_ = replica.Close()
		_ = primary.Close()
		return nil, nil, err
	}
	return primary, replica, nil
}

// PrimaryReplica starts a primary and a replica like StartPrimaryReplica and
// stops both when the test ends. It fails the test when they cannot be
// started.
func PrimaryReplica(t testing.TB, args ...string) (primary, replica *Server) {
	t.Helper()
	primary, replica, err := StartPrimaryReplica(args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = replica.Close()
		_ = primary.Close()
	})
	return primary, replica
}

// WaitReplicated waits until every write the primary has accepted so far has
// reached n replicas (WAIT n), failing the test after ReplicationTimeout.
func (s *Server) WaitReplicated(t testing.TB, n int) {
	t.Helper()
	got, err := s.Call("WAIT", n, ReplicationTimeout.Milliseconds())
	if err != nil {
		t.Fatalf("redistest: WAIT %d on %s: %v", n, s.Addr, err)
	}
	if acked, _ := got.(int64); acked < int64(n) {
		t.Fatalf("redistest: WAIT %d on %s: only %d replicas acknowledged within %v", n, s.Addr, acked, ReplicationTimeout)
	}
}

// waitReplicas waits until each replica in pairs (replica -> primary) has
// master_link_status:up towards its primary, and each primary counts as many
// connected replicas as it has in pairs.
func waitReplicas(timeout time.Duration, pairs map[*Server]*Server) error {
	return waitFor(timeout, func() error { return checkReplicas(pairs) })
}

// checkReplicas returns nil if each replica in pairs (replica -> primary) has
// master_link_status:up towards its primary and each primary counts as many
// connected replicas as it has in pairs.
func checkReplicas(pairs map[*Server]*Server) error {
	want := make(map[*Server]int)
	for _, p := range pairs {
		want[p]++
	}
	for r, p := range pairs {
		info, err := r.FetchInfo("replication")
		if err != nil {
			return err
		}
		if info["role"] != "slave" || info["master_port"] != strconv.Itoa(p.Port) {
			return fmt.Errorf("redistest: %s is %s of port %s, want replica of %s",
				r.Addr, info["role"], info["master_port"], p.Addr)
		}
		if info["master_link_status"] != "up" {
			return fmt.Errorf("redistest: replica %s: master_link_status:%s", r.Addr, info["master_link_status"])
		}
	}
	for p, n := range want {
		info, err := p.FetchInfo("replication")
		if err != nil {
			return err
		}
		if info["role"] != "master" || info["connected_slaves"] != strconv.Itoa(n) {
			return fmt.Errorf("redistest: primary %s: role:%s connected_slaves:%s, want master with %d",
				p.Addr, info["role"], info["connected_slaves"], n)
		}
	}
	return nil
}

// waitFor calls check every 20 ms until it returns nil or timeout passes,
// and then returns check's last error.
func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: gave up after %v: %s", timeout,
				strings.TrimPrefix(err.Error(), "redistest: "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
