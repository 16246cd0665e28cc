package redistest

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStandalone(t *testing.T) {
	t.Parallel()
	s := Standalone(t)

	// A fresh server has clean statistics.
	stats := s.CommandStats(t)
	for name, calls := range stats {
		if name != "config|resetstat" {
			t.Errorf("fresh server has stat %s=%d", name, calls)
		}
	}

	if !strings.HasPrefix(s.Addr, "127.0.0.1:") || s.Addr != "127.0.0.1:"+strconv.Itoa(s.Port) {
		t.Fatalf("Addr = %q, Port = %d", s.Addr, s.Port)
	}
	if s.PID() <= 0 || !s.Running() {
		t.Fatalf("PID = %d, Running = %v", s.PID(), s.Running())
	}
	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING = %v", got)
	}
	if got := s.Info(t, "server")["process_id"]; got != strconv.Itoa(s.PID()) {
		t.Fatalf("process_id = %q, want %d", got, s.PID())
	}
	for _, kv := range [][2]string{{"save", ""}, {"appendonly", "no"}, {"bind", "127.0.0.1"}} {
		got, err := redis.Strings(s.Call("CONFIG", "GET", kv[0]))
		if err != nil || len(got) != 2 || got[1] != kv[1] {
			t.Errorf("CONFIG GET %s = %q, %v; want %q", kv[0], got, err, kv[1])
		}
	}

	// Error replies are values, not failures.
	s.Do(t, "SET", "k", "v")
	reply := s.Do(t, "INCR", "k")
	if e, ok := reply.(redis.Error); !ok || !strings.Contains(string(e), "not an integer") {
		t.Fatalf("INCR on a string = %#v, want redis.Error", reply)
	}
	if _, err := s.Call("INCR", "k"); !errors.As(err, new(redis.Error)) {
		t.Fatalf("Call INCR error = %v, want redis.Error", err)
	}

	c := s.Conn(t)
	if _, err := c.Do("CLIENT", "REPLY", "ON"); err != nil {
		t.Fatal(err)
	}
	c.Send("MULTI")
	c.Send("SET", "a", 1)
	c.Send("SET", "b", 2)
	if _, err := c.Do("EXEC"); err != nil {
		t.Fatal(err)
	}
	stats = s.CommandStats(t)
	want := map[string]int64{"set": 3, "incr": 2, "multi": 1, "exec": 1, "client|reply": 1, "ping": 1}
	for name, n := range want {
		if stats[name] != n {
			t.Errorf("stats[%q] = %d, want %d (all: %v)", name, stats[name], n, stats)
		}
	}

	s.ResetStats(t)
	if n := s.CommandStats(t)["set"]; n != 0 {
		t.Errorf("set calls after ResetStats = %d", n)
	}
	s.FlushAll(t)
	if n, _ := redis.Int(s.Call("DBSIZE")); n != 0 {
		t.Errorf("DBSIZE after FlushAll = %d", n)
	}

	dir := s.Dir
	s.Stop()
	if s.Running() {
		t.Fatal("still running after Stop")
	}
	if _, err := redis.Dial("tcp", s.Addr); err == nil {
		t.Fatal("dial succeeded after Stop")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dir %s not removed: %v", dir, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStandaloneArgs(t *testing.T) {
	t.Parallel()
	s := Standalone(t, "--maxmemory", "10mb", "--proto-max-bulk-len", "1048576")
	got, err := redis.Strings(s.Call("CONFIG", "GET", "maxmemory"))
	if err != nil || got[1] != strconv.Itoa(10<<20) {
		t.Fatalf("CONFIG GET maxmemory = %q, %v", got, err)
	}
	// DEBUG is enabled for tests that need a slow server.
	if got := s.Do(t, "DEBUG", "SLEEP", 0); got != "OK" {
		t.Fatalf("DEBUG SLEEP = %v", got)
	}
}

func TestStartStandaloneBadArgs(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s, err := StartStandalone("--no-such-option", "1")
	if err == nil {
		s.Close()
		t.Fatal("started with a bad option")
	}
	if !strings.HasPrefix(err.Error(), "redistest: ") || !strings.Contains(err.Error(), "no-such-option") {
		t.Fatalf("error does not start with redistest: or lacks the log: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failure took %v", d)
	}
}

// TestPortClash checks that a start on a port someone else holds is retried
// on another port. It replaces pickPorts, so it must not run in parallel.
func TestPortClash(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		if calls == 1 {
			return []int{taken}, nil
		}
		return freePorts(n)
	}
	defer func() { pickPorts = freePorts }()

	s := Standalone(t)
	if calls != 2 || s.Port == taken {
		t.Fatalf("calls = %d, port = %d (taken %d)", calls, s.Port, taken)
	}
	if strings.Contains(s.Log(), "Address already in use") {
		t.Fatal("log of the failed attempt was kept")
	}
}

func TestRedisNotFound(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartStandalone()
	if !errors.Is(err, ErrRedisNotFound) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y redis-server") {
		t.Fatalf("message lacks the install hint: %v", err)
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	s := Standalone(t)
	s.Do(t, "SET", "k", "v")
	pid := s.PID()
	s.Kill()
	if s.Running() {
		t.Fatal("still running after Kill")
	}
	if _, err := s.Call("PING"); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.PID() == pid {
		t.Fatal("same PID after Restart")
	}
	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING after Restart = %v", got)
	}
	if got := s.Do(t, "EXISTS", "k"); got != int64(0) {
		t.Fatalf("key survived a restart without persistence: %v", got)
	}
}

func TestManyInParallel(t *testing.T) {
	t.Parallel()
	const n = 8
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = StartStandalone()
		}()
	}
	wg.Wait()
	ports := make(map[int]bool)
	for i, s := range servers {
		if errs[i] != nil {
			t.Error(errs[i])
			continue
		}
		defer s.Close()
		if ports[s.Port] {
			t.Errorf("port %d used twice", s.Port)
		}
		ports[s.Port] = true
		if got := s.Do(t, "PING"); got != "PONG" {
			t.Errorf("PING %s = %v", s.Addr, got)
		}
	}
}

func TestPrimaryReplica(t *testing.T) {
	t.Parallel()
	p, r := PrimaryReplica(t)
	if got := p.Info(t, "replication")["connected_slaves"]; got != "1" {
		t.Fatalf("connected_slaves = %q", got)
	}
	if got := r.Info(t, "replication")["master_link_status"]; got != "up" {
		t.Fatalf("master_link_status = %q", got)
	}
	p.Do(t, "SET", "k", "v")
	p.WaitReplicated(t, 1)
	if got, _ := redis.String(r.Do(t, "GET", "k"), nil); got != "v" {
		t.Fatalf("GET on replica = %q", got)
	}
	// Writes made on another connection are waited for too.
	conn := p.Conn(t)
	for i := range 500 {
		if _, err := conn.Do("SET", "c"+strconv.Itoa(i), strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	p.WaitReplicated(t, 1)
	if got, _ := redis.Int(r.Do(t, "DBSIZE"), nil); got != 501 {
		t.Fatalf("DBSIZE on replica = %d, want 501", got)
	}
	reply := r.Do(t, "SET", "k", "w")
	if e, ok := reply.(redis.Error); !ok || !strings.HasPrefix(string(e), "READONLY") {
		t.Fatalf("SET on replica = %#v, want READONLY error", reply)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := NewCluster(t)
	t.Logf("cluster up in %v", time.Since(start))

	if len(c.Primaries) != 3 || len(c.Replicas) != 3 || len(c.Nodes()) != 6 || len(c.Addrs()) != 6 {
		t.Fatalf("got %d primaries, %d replicas", len(c.Primaries), len(c.Replicas))
	}
	for _, s := range c.Nodes() {
		info, _ := redis.String(s.Do(t, "CLUSTER", "INFO"), nil)
		if got := ParseInfo(info)["cluster_state"]; got != "ok" {
			t.Fatalf("%s: cluster_state:%s", s, got)
		}
		nodes, err := clusterNodes(s)
		if err != nil {
			t.Fatal(err)
		}
		masters, slaves := 0, 0
		for _, n := range nodes {
			switch {
			case n.flags["master"] && len(n.slots) > 0:
				masters++
			case n.flags["slave"]:
				slaves++
			}
		}
		if masters != 3 || slaves != 3 {
			t.Fatalf("%s sees %d masters and %d replicas", s, masters, slaves)
		}
	}
	for i, p := range c.Primaries {
		if r := c.ReplicaOf(t, p); r != c.Replicas[i] {
			t.Fatalf("ReplicaOf(Primaries[%d]) = %s, want %s", i, r, c.Replicas[i])
		}
		if c.NodeID(p) == "" {
			t.Fatalf("no node ID for %s", p)
		}
	}
	if got := c.OwnerOf(t, 0); got != c.Primaries[0] {
		t.Fatalf("OwnerOf(0) = %s", got)
	}
	if got := c.OwnerOf(t, NumSlots-1); got != c.Primaries[2] {
		t.Fatalf("OwnerOf(16383) = %s", got)
	}

	t.Run("MigrateSlot", func(t *testing.T) {
		const key = "migrating-key"
		slot := int(c.Primaries[0].Do(t, "CLUSTER", "KEYSLOT", key).(int64))
		from := c.OwnerOf(t, slot)
		to := c.Primaries[0]
		if from == to {
			to = c.Primaries[1]
		}
		from.Do(t, "SET", key, "v")
		begin := time.Now()
		c.MigrateSlot(t, slot, from, to)
		t.Logf("migration took %v", time.Since(begin))
		if got := c.OwnerOf(t, slot); got != to {
			t.Fatalf("owner after migration = %s, want %s", got, to)
		}
		if got, _ := redis.String(to.Do(t, "GET", key), nil); got != "v" {
			t.Fatalf("GET on new owner = %q", got)
		}
		reply := from.Do(t, "GET", key)
		if e, ok := reply.(redis.Error); !ok || !strings.HasPrefix(string(e), "MOVED "+strconv.Itoa(slot)+" "+to.Addr) {
			t.Fatalf("GET on old owner = %#v, want MOVED", reply)
		}
	})

	t.Run("AskState", func(t *testing.T) {
		const key = "ask-key"
		slot := int(c.Primaries[0].Do(t, "CLUSTER", "KEYSLOT", key).(int64))
		from := c.OwnerOf(t, slot)
		to := c.Primaries[0]
		if from == to {
			to = c.Primaries[1]
		}
		c.BeginMigration(t, slot, from, to)
		reply := from.Do(t, "GET", key)
		if e, ok := reply.(redis.Error); !ok || !strings.HasPrefix(string(e), "ASK "+strconv.Itoa(slot)+" "+to.Addr) {
			t.Fatalf("GET of a missing key on the migrating node = %#v, want ASK", reply)
		}
		conn := to.Conn(t)
		conn.Send("ASKING")
		conn.Send("SET", key, "v")
		conn.Flush()
		conn.Receive()
		if got, err := conn.Receive(); err != nil || got != "OK" {
			t.Fatalf("ASKING+SET on importing node = %v, %v", got, err)
		}
		c.FinishMigration(t, slot, from, to)
		if got := c.OwnerOf(t, slot); got != to {
			t.Fatalf("owner = %s, want %s", got, to)
		}
		if got, _ := redis.String(to.Do(t, "GET", key), nil); got != "v" {
			t.Fatalf("GET = %q", got)
		}
	})

	t.Run("Failover", func(t *testing.T) {
		old := c.Primaries[1]
		replica := c.ReplicaOf(t, old)
		begin := time.Now()
		c.Failover(t, old)
		t.Logf("failover took %v", time.Since(begin))
		if c.Primaries[1] != replica || c.ReplicaOf(t, replica) != old {
			t.Fatal("roles not swapped in Primaries/Replicas")
		}
		if got := replica.Info(t, "replication")["role"]; got != "master" {
			t.Fatalf("new primary role:%s", got)
		}
		if got := old.Info(t, "replication")["role"]; got != "slave" {
			t.Fatalf("old primary role:%s", got)
		}
	})

	t.Run("KillPrimary", func(t *testing.T) {
		victim := c.Primaries[2]
		replica := c.ReplicaOf(t, victim)
		begin := time.Now()
		c.KillPrimary(t, victim)
		t.Logf("promotion took %v", time.Since(begin))
		if victim.Running() {
			t.Fatal("victim still running")
		}
		if c.Primaries[2] != replica || len(c.Replicas) != 2 || len(c.Nodes()) != 5 {
			t.Fatalf("bookkeeping: primaries %v, replicas %v", c.Primaries, c.Replicas)
		}
		if got := c.OwnerOf(t, NumSlots-1); got != replica {
			t.Fatalf("OwnerOf(16383) = %s, want promoted %s", got, replica)
		}
		key := "killed-" + strconv.Itoa(NumSlots-1)
		slot := int(replica.Do(t, "CLUSTER", "KEYSLOT", key).(int64))
		if owner := c.OwnerOf(t, slot); owner == replica {
			if got := replica.Do(t, "SET", key, "v"); got != "OK" {
				t.Fatalf("SET on promoted replica = %v", got)
			}
		}
	})

	c.FlushAll(t)
	c.ResetStats(t)
	owner := c.OwnerOf(t, int(c.Primaries[0].Do(t, "CLUSTER", "KEYSLOT", "x").(int64)))
	if got := owner.Do(t, "SET", "x", 1); got != "OK" {
		t.Fatalf("SET on owner = %v", got)
	}
	if got := c.CommandStats(t)["set"]; got != 1 {
		t.Fatalf("cluster set calls = %d", got)
	}
}

func TestParseInfo(t *testing.T) {
	info := "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n\r\n# Replication\r\nrole:master\r\nmaster_replid:abc:def\r\n"
	got := ParseInfo(info)
	want := map[string]string{"redis_version": "7.0.15", "process_id": "42", "role": "master", "master_replid": "abc:def"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_set:calls=3,usec=48,usec_per_call=16.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|reply:calls=1,usec=4,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_EXEC:calls=2,usec=4,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n"
	got := ParseCommandStats(info)
	want := map[string]int64{"set": 3, "client|reply": 1, "exec": 2}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func TestParseClusterNodes(t *testing.T) {
	text := "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-b2]\n" +
		"b2 127.0.0.1:7001@17001 master - 0 1700000000000 2 connected 5461-10922 16000\n" +
		"c3 127.0.0.1:7002@17002 slave a1 0 1700000000000 1 connected\n" +
		"d4 :0@0 master,fail,noaddr - 0 0 3 disconnected\n"
	nodes, err := parseClusterNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 4 {
		t.Fatalf("got %d nodes", len(nodes))
	}
	if n := nodes[0]; !n.flags["myself"] || len(n.slots) != 1 || n.slots[0] != [2]int{0, 5460} {
		t.Errorf("node 0 = %+v", n)
	}
	if n := nodes[1]; len(n.slots) != 2 || n.slots[1] != [2]int{16000, 16000} {
		t.Errorf("node 1 = %+v", n)
	}
	if n := nodes[2]; n.master != "a1" || !n.flags["slave"] || n.link != "connected" {
		t.Errorf("node 2 = %+v", n)
	}
	if n := nodes[3]; !n.failing() {
		t.Errorf("node 3 not failing: %+v", n)
	}
	if _, err := parseClusterNodes("garbage"); err == nil {
		t.Error("parsed garbage")
	}
}
