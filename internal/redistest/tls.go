package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// TLS servers. A TLSServer listens only for TLS (--port 0 --tls-port N), so
// every helper of this file talks TLS to it: the plain-TCP helpers of Server
// (Call, CommandStats, …) cannot reach it, which is why TLSServer does not
// embed Server.

// TLSCerts names the PEM files a TLS server is started with, and holds the
// client configuration that trusts its certificate.
type TLSCerts struct {
	CAFile   string // the CA certificate (--tls-ca-cert-file)
	CertFile string // the server certificate, signed by the CA (--tls-cert-file)
	KeyFile  string // the server certificate's key (--tls-key-file)
	// CAPool holds the CA certificate, for a client's tls.Config.RootCAs.
	CAPool *x509.CertPool
}

// ClientConfig returns a new client configuration that trusts the CA.
func (c TLSCerts) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.CAPool, MinVersion: tls.VersionTLS12}
}

// GenerateTLSCerts makes a fresh CA and a server certificate it signs
// (ECDSA P-256, valid for 127.0.0.1 and localhost, for server and client
// authentication, as cluster-bus and replication links use it both ways),
// and writes them as PEM files into dir.
func GenerateTLSCerts(dir string) (TLSCerts, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSCerts{}, fmt.Errorf("redistest: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return TLSCerts{}, fmt.Errorf("redistest: CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return TLSCerts{}, fmt.Errorf("redistest: CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSCerts{}, fmt.Errorf("redistest: server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return TLSCerts{}, fmt.Errorf("redistest: server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return TLSCerts{}, fmt.Errorf("redistest: server key: %w", err)
	}
	c := TLSCerts{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server-key.pem"),
		CAPool:   x509.NewCertPool(),
	}
	c.CAPool.AddCert(caCert)
	for _, f := range []struct {
		path, kind string
		der        []byte
	}{{c.CAFile, "CERTIFICATE", caDER}, {c.CertFile, "CERTIFICATE", der}, {c.KeyFile, "EC PRIVATE KEY", keyDER}} {
		data := pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der})
		if err := os.WriteFile(f.path, data, 0o600); err != nil {
			return TLSCerts{}, fmt.Errorf("redistest: write %s: %w", f.path, err)
		}
	}
	return c, nil
}

// NewTLSCerts is GenerateTLSCerts into t.TempDir(), failing the test on error.
func NewTLSCerts(t testing.TB) TLSCerts {
	t.Helper()
	c, err := GenerateTLSCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TLSServer is one redis-server process on 127.0.0.1 that accepts only TLS
// connections (--port 0 --tls-port Port, --tls-auth-clients no). Its
// helpers mirror Server's, over TLS.
type TLSServer struct {
	// Addr is "127.0.0.1:<Port>".
	Addr string
	// Port is the TLS port (there is no plain-TCP port).
	Port int
	// Dir is the server's working directory.
	Dir string
	// Client is the TLS configuration the helpers dial with (it trusts
	// the server's CA). Do not modify it.
	Client *tls.Config

	proc    *Server // the process: its args, Stop, Kill, Log; its plain-TCP helpers are unused
	busPort int     // cluster bus port (cluster nodes only)

	mu   sync.Mutex
	idle []redis.Conn
}

// StartTLSStandalone starts a TLS-only standalone redis-server with certs
// on a free loopback port and waits until it answers PING over TLS. Extra
// args are appended. The caller must call Close.
func StartTLSStandalone(certs TLSCerts, args ...string) (*TLSServer, error) {
	return startTLS(certs, 0, func(string, []int) []string { return args })
}

// TLSStandalone starts a server like StartTLSStandalone and closes it when
// the test ends, failing the test when it cannot be started.
func TLSStandalone(t testing.TB, certs TLSCerts, args ...string) *TLSServer {
	t.Helper()
	s, err := StartTLSStandalone(certs, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startTLS is startWith for a TLS-only server.
func startTLS(certs TLSCerts, extraPorts int, mkArgs func(dir string, ports []int) []string) (*TLSServer, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-tls-")
	if err != nil {
		return nil, fmt.Errorf("redistest: create server dir: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if attempt > 0 {
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("redistest: clean server dir: %w", err)
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, fmt.Errorf("redistest: create server dir: %w", err)
			}
		}
		ports, err := pickPorts(1 + extraPorts)
		if err != nil {
			lastErr = err
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		proc := &Server{Addr: addr, Port: ports[0], Dir: dir, extraPorts: ports[1:]}
		proc.args = append([]string{
			"--bind", "127.0.0.1",
			"--port", "0",
			"--tls-port", strconv.Itoa(ports[0]),
			"--tls-cert-file", certs.CertFile,
			"--tls-key-file", certs.KeyFile,
			"--tls-ca-cert-file", certs.CAFile,
			"--tls-auth-clients", "no",
			"--save", "",
			"--appendonly", "no",
			"--daemonize", "no",
			"--dir", dir,
			"--logfile", "",
			"--repl-diskless-sync-delay", "0",
			"--enable-debug-command", "yes",
		}, mkArgs(dir, ports)...)
		s := &TLSServer{Addr: addr, Port: ports[0], Dir: dir, Client: certs.ClientConfig(), proc: proc}
		if len(ports) > 1 {
			s.busPort = ports[1]
		}
		err = s.launch(bin)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// launch starts the process and waits until it answers PING over TLS.
func (s *TLSServer) launch(bin string) error { return s.proc.launchWith(bin, s.waitReady) }

func (s *TLSServer) waitReady(pid int, done <-chan struct{}) error {
	deadline := time.Now().Add(StartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redistest: TLS redis-server on port %d exited during startup", s.Port)
		default:
		}
		lastErr = s.checkReady(pid)
		if lastErr == nil || errors.Is(lastErr, errPortInUse) {
			return lastErr
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("redistest: TLS redis-server on port %d not ready after %v: %v", s.Port, StartTimeout, lastErr)
}

// checkReady sends PING over TLS and checks that the server is ours.
func (s *TLSServer) checkReady(pid int) error {
	c, err := s.Dial(redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		return err
	}
	info, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		return err
	}
	if got := ParseInfo(info)["process_id"]; got != strconv.Itoa(pid) {
		return fmt.Errorf("%w: port %d is served by pid %s, not %d", errPortInUse, s.Port, got, pid)
	}
	_, err = c.Do("CONFIG", "RESETSTAT")
	return err
}

// Dial opens a new TLS connection to the server. The caller closes it.
func (s *TLSServer) Dial(opts ...redis.DialOption) (redis.Conn, error) {
	opts = append([]redis.DialOption{
		redis.DialConnectTimeout(5 * time.Second),
		redis.DialUseTLS(true),
		redis.DialTLSConfig(s.Client),
	}, opts...)
	c, err := redis.Dial("tcp", s.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("redistest: dial TLS %s: %w", s.Addr, err)
	}
	return c, nil
}

// Conn opens a TLS connection and closes it when the test ends.
func (s *TLSServer) Conn(t testing.TB, opts ...redis.DialOption) redis.Conn {
	t.Helper()
	c, err := s.Dial(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Call runs one command over a cached TLS connection (see Server.Call).
func (s *TLSServer) Call(cmd string, args ...any) (any, error) {
	s.mu.Lock()
	var c redis.Conn
	if n := len(s.idle); n > 0 {
		c = s.idle[n-1]
		s.idle = s.idle[:n-1]
	}
	s.mu.Unlock()
	if c == nil {
		var err error
		if c, err = s.Dial(redis.DialReadTimeout(callReadTimeout), redis.DialWriteTimeout(callReadTimeout)); err != nil {
			return nil, err
		}
	}
	reply, err := c.Do(cmd, args...)
	if c.Err() != nil {
		_ = c.Close()
		return reply, err
	}
	s.mu.Lock()
	if len(s.idle) < maxIdleConns {
		s.idle = append(s.idle, c)
		c = nil
	}
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	return reply, err
}

// Do is Server.Do over TLS: error replies come back as redis.Error values.
func (s *TLSServer) Do(t testing.TB, cmd string, args ...any) any {
	t.Helper()
	reply, err := s.Call(cmd, args...)
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return rerr
	}
	if err != nil {
		t.Fatalf("redistest: %s %s on %s: %v", cmd, formatArgs(args), s.Addr, err)
	}
	return reply
}

// MustDo is Server.MustDo over TLS.
func (s *TLSServer) MustDo(t testing.TB, cmd string, args ...any) any {
	t.Helper()
	reply, err := s.Call(cmd, args...)
	if err != nil {
		t.Fatalf("redistest: %s %s on %s: %v", cmd, formatArgs(args), s.Addr, err)
	}
	return reply
}

// FlushAll removes every key (FLUSHALL).
func (s *TLSServer) FlushAll(t testing.TB) { t.Helper(); s.MustDo(t, "FLUSHALL") }

// ResetStats clears the statistics (CONFIG RESETSTAT).
func (s *TLSServer) ResetStats(t testing.TB) { t.Helper(); s.MustDo(t, "CONFIG", "RESETSTAT") }

// FetchInfo runs INFO section and parses the reply.
func (s *TLSServer) FetchInfo(section string) (map[string]string, error) {
	info, err := redis.String(s.Call("INFO", section))
	if err != nil {
		return nil, fmt.Errorf("redistest: INFO %s on %s: %w", section, s.Addr, err)
	}
	return ParseInfo(info), nil
}

// Info returns the fields of INFO section, failing the test on error.
func (s *TLSServer) Info(t testing.TB, section string) map[string]string {
	t.Helper()
	m, err := s.FetchInfo(section)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// CommandStats is Server.CommandStats over TLS.
func (s *TLSServer) CommandStats(t testing.TB) map[string]int64 {
	t.Helper()
	info, err := redis.String(s.Call("INFO", "commandstats"))
	if err != nil {
		t.Fatalf("redistest: INFO commandstats on %s: %v", s.Addr, err)
	}
	return ParseCommandStats(info)
}

// PID returns the process id of the running redis-server.
func (s *TLSServer) PID() int { return s.proc.PID() }

// Log returns what the server has written to its log so far.
func (s *TLSServer) Log() string { return s.proc.Log() }

// String returns the server's address.
func (s *TLSServer) String() string { return s.Addr }

func (s *TLSServer) dropIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// Stop shuts the server down gracefully (see Server.Stop).
func (s *TLSServer) Stop() { s.dropIdle(); s.proc.Stop() }

// Kill sends SIGKILL to the server (see Server.Kill).
func (s *TLSServer) Kill() { s.dropIdle(); s.proc.Kill() }

// Restart starts the server again on the same port and arguments.
func (s *TLSServer) Restart() error {
	s.Stop()
	bin, err := binary()
	if err != nil {
		return err
	}
	return s.launch(bin)
}

// Close stops the server and removes its directory; safe to call twice.
func (s *TLSServer) Close() error {
	s.dropIdle()
	return s.proc.Close()
}

// TLSCluster is a Redis Cluster of three primaries with one replica each,
// every node TLS-only: clients, the cluster bus (--tls-cluster yes) and
// replication (--tls-replication yes) all use TLS. Slots are assigned as in
// Cluster; Replicas[i] replicates Primaries[i]. It offers the read-only
// helpers of Cluster; its topology is not meant to be changed.
type TLSCluster struct {
	Primaries []*TLSServer
	Replicas  []*TLSServer

	ids       map[*TLSServer]string
	primaryOf map[*TLSServer]*TLSServer
	all       []*TLSServer

	closeOnce sync.Once
	closeErr  error
}

// StartTLSCluster starts six TLS-only cluster nodes with certs, forms the
// cluster and waits until every node reports cluster_state:ok and sees every
// replica attached. The caller must call Close.
func StartTLSCluster(certs TLSCerts, args ...string) (*TLSCluster, error) {
	const n = 2 * clusterPrimaries
	nodes := make([]*TLSServer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = startTLS(certs, 1, func(dir string, ports []int) []string {
				return append([]string{
					"--cluster-enabled", "yes",
					"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
					"--cluster-node-timeout", strconv.Itoa(ClusterNodeTimeout),
					"--cluster-port", strconv.Itoa(ports[1]),
					"--cluster-replica-validity-factor", "0",
					"--tls-cluster", "yes",
					"--tls-replication", "yes",
				}, args...)
			})
		}()
	}
	wg.Wait()
	c := &TLSCluster{ids: map[*TLSServer]string{}, primaryOf: map[*TLSServer]*TLSServer{}}
	for _, s := range nodes {
		if s != nil {
			c.all = append(c.all, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.Primaries = append([]*TLSServer(nil), nodes[:clusterPrimaries]...)
	c.Replicas = append([]*TLSServer(nil), nodes[clusterPrimaries:]...)
	for i, r := range c.Replicas {
		c.primaryOf[r] = c.Primaries[i]
	}
	if err := c.setup(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// NewTLSCluster starts a cluster like StartTLSCluster and closes it when the
// test ends, failing the test when it cannot be formed.
func NewTLSCluster(t testing.TB, certs TLSCerts, args ...string) *TLSCluster {
	t.Helper()
	c, err := StartTLSCluster(certs, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (c *TLSCluster) setup() error {
	for i, s := range c.all {
		id, err := redis.String(s.Call("CLUSTER", "MYID"))
		if err != nil {
			return fmt.Errorf("redistest: CLUSTER MYID on %s: %w", s.Addr, err)
		}
		c.ids[s] = id
		if _, err := s.Call("CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return fmt.Errorf("redistest: CLUSTER SET-CONFIG-EPOCH on %s: %w", s.Addr, err)
		}
	}
	for i, p := range c.Primaries {
		lo, hi := i*NumSlots/clusterPrimaries, (i+1)*NumSlots/clusterPrimaries-1
		if i == clusterPrimaries-1 {
			hi = NumSlots - 1
		}
		if _, err := p.Call("CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			return fmt.Errorf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, p.Addr, err)
		}
	}
	first := c.all[0]
	for _, s := range c.all[1:] {
		if _, err := s.Call("CLUSTER", "MEET", "127.0.0.1", first.Port, first.busPort); err != nil {
			return fmt.Errorf("redistest: CLUSTER MEET on %s: %w", s.Addr, err)
		}
	}
	if err := waitFor(ClusterTimeout, c.checkAllKnown); err != nil {
		return fmt.Errorf("redistest: TLS cluster nodes did not meet: %w", err)
	}
	for _, r := range c.Replicas {
		if _, err := r.Call("CLUSTER", "REPLICATE", c.ids[c.primaryOf[r]]); err != nil {
			return fmt.Errorf("redistest: CLUSTER REPLICATE on %s: %w", r.Addr, err)
		}
	}
	if err := waitFor(ClusterTimeout, c.checkHealthy); err != nil {
		return fmt.Errorf("redistest: TLS cluster not healthy: %w", err)
	}
	for _, s := range c.all {
		if _, err := s.Call("CONFIG", "RESETSTAT"); err != nil {
			return fmt.Errorf("redistest: CONFIG RESETSTAT on %s: %w", s.Addr, err)
		}
	}
	return nil
}

func (c *TLSCluster) nodes(s *TLSServer) ([]clusterNode, error) {
	text, err := redis.String(s.Call("CLUSTER", "NODES"))
	if err != nil {
		return nil, fmt.Errorf("redistest: CLUSTER NODES on %s: %w", s.Addr, err)
	}
	return parseClusterNodes(text)
}

func (c *TLSCluster) checkAllKnown() error {
	for _, s := range c.all {
		nodes, err := c.nodes(s)
		if err != nil {
			return err
		}
		known := map[string]bool{}
		for _, n := range nodes {
			if !n.flags["handshake"] && !n.flags["noaddr"] {
				known[n.id] = true
			}
		}
		for o, id := range c.ids {
			if !known[id] {
				return fmt.Errorf("redistest: %s does not know %s yet", s.Addr, o.Addr)
			}
		}
	}
	return nil
}

// checkHealthy returns nil once every node reports cluster_state:ok, sees
// every primary as a connected master and every replica attached to its
// primary, and each replica's replication link is up.
func (c *TLSCluster) checkHealthy() error {
	for _, s := range c.all {
		info, err := redis.String(s.Call("CLUSTER", "INFO"))
		if err != nil {
			return fmt.Errorf("redistest: CLUSTER INFO on %s: %w", s.Addr, err)
		}
		if state := ParseInfo(info)["cluster_state"]; state != "ok" {
			return fmt.Errorf("redistest: %s reports cluster_state:%s", s.Addr, state)
		}
		nodes, err := c.nodes(s)
		if err != nil {
			return err
		}
		byID := map[string]clusterNode{}
		for _, n := range nodes {
			byID[n.id] = n
		}
		for _, p := range c.Primaries {
			n, ok := byID[c.ids[p]]
			if !ok || !n.flags["master"] || n.failing() || n.link != "connected" || len(n.slots) == 0 {
				return fmt.Errorf("redistest: %s does not see primary %s as a healthy master: %+v", s.Addr, p.Addr, n)
			}
		}
		for r, p := range c.primaryOf {
			n, ok := byID[c.ids[r]]
			if !ok || !n.flags["slave"] || n.master != c.ids[p] || n.failing() || n.link != "connected" {
				return fmt.Errorf("redistest: %s does not see %s as a healthy replica of %s: %+v", s.Addr, r.Addr, p.Addr, n)
			}
		}
	}
	for r := range c.primaryOf {
		info, err := r.FetchInfo("replication")
		if err != nil {
			return err
		}
		if info["master_link_status"] != "up" {
			return fmt.Errorf("redistest: replica %s: master_link_status:%s", r.Addr, info["master_link_status"])
		}
	}
	return nil
}

// Nodes returns the primaries followed by the replicas.
func (c *TLSCluster) Nodes() []*TLSServer {
	return append(append([]*TLSServer(nil), c.Primaries...), c.Replicas...)
}

// Addrs returns the addresses of Nodes, primaries first.
func (c *TLSCluster) Addrs() []string {
	var addrs []string
	for _, s := range c.Nodes() {
		addrs = append(addrs, s.Addr)
	}
	return addrs
}

// NodeID returns the cluster node ID of s.
func (c *TLSCluster) NodeID(s *TLSServer) string { return c.ids[s] }

// OwnerOf returns the primary serving slot (by the primaries' own claims).
func (c *TLSCluster) OwnerOf(t testing.TB, slot int) *TLSServer {
	t.Helper()
	for _, p := range c.Primaries {
		nodes, err := c.nodes(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if !n.flags["myself"] {
				continue
			}
			for _, r := range n.slots {
				if slot >= r[0] && slot <= r[1] {
					return p
				}
			}
		}
	}
	t.Fatalf("redistest: slot %d is not served by any primary", slot)
	return nil
}

// FlushAll empties every primary and waits until its replica applied it.
func (c *TLSCluster) FlushAll(t testing.TB) {
	t.Helper()
	for _, p := range c.Primaries {
		p.FlushAll(t)
		got, err := p.Call("WAIT", 1, ReplicationTimeout.Milliseconds())
		if n, _ := got.(int64); err != nil || n < 1 {
			t.Fatalf("redistest: WAIT 1 on %s: %v, %v", p.Addr, got, err)
		}
	}
}

// ResetStats clears the statistics of every node.
func (c *TLSCluster) ResetStats(t testing.TB) {
	t.Helper()
	for _, s := range c.all {
		s.ResetStats(t)
	}
}

// CommandStats returns the sum of the primaries' command statistics.
func (c *TLSCluster) CommandStats(t testing.TB) map[string]int64 {
	t.Helper()
	sum := map[string]int64{}
	for _, p := range c.Primaries {
		for k, v := range p.CommandStats(t) {
			sum[k] += v
		}
	}
	return sum
}

// Close stops every node and removes their directories; safe to call twice.
func (c *TLSCluster) Close() error {
	c.closeOnce.Do(func() {
		errs := make([]error, len(c.all))
		var wg sync.WaitGroup
		for i, s := range c.all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Close()
			}()
		}
		wg.Wait()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
