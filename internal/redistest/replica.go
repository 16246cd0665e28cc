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
// reached n replicas, failing the test after ReplicationTimeout. It compares
// the primary's replication offset with the offsets its replicas
// acknowledged (a WAIT would cover only the writes of its own connection).
func (s *Server) WaitReplicated(t testing.TB, n int) {
	t.Helper()
	err := waitFor(ReplicationTimeout, func() error {
		info, err := s.FetchInfo("replication")
		if err != nil {
			return err
		}
		acked, err := replicasAt(info)
		if err != nil {
			return err
		}
		if acked < n {
			return fmt.Errorf("redistest: %d of %d replicas of %s have its writes", acked, n, s.Addr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// replicasAt counts the replicas that the fields of a primary's INFO
// replication list at its master_repl_offset.
func replicasAt(fields map[string]string) (int, error) {
	offset, err := strconv.ParseInt(fields["master_repl_offset"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redistest: no master_repl_offset in INFO replication")
	}
	n := 0
	for k, v := range fields {
		if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "offset=") {
			continue
		}
		for _, kv := range strings.Split(v, ",") {
			if at, ok := strings.CutPrefix(kv, "offset="); ok {
				if o, err := strconv.ParseInt(at, 10, 64); err == nil && o >= offset {
					n++
				}
			}
		}
	}
	return n, nil
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
