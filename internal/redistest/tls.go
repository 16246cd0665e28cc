package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLS servers. A TLSServer listens only for TLS (--port 0 --tls-port N). It
// wraps a Server started with a TLS client configuration, so every helper
// of Server (Call, CommandStats, …) talks TLS to it; TLSCluster likewise
// wraps a Cluster of such servers.

// TLSCerts names the PEM files a TLS server is started with, and holds the
// client configuration that trusts its certificate.
type TLSCerts struct {
	CAFile   string // the CA certificate (--tls-ca-cert-file)
	CertFile string // the server certificate, signed by the CA (--tls-cert-file)
	KeyFile  string // the server certificate's key (--tls-key-file)
	// CAPool holds the CA certificate, for a client's tls.Config.RootCAs.
	CAPool *x509.CertPool
}

// ClientConfig returns a new client configuration that trusts the CA and
// presents the server's certificate (made for client authentication too),
// for a server started with --tls-auth-clients yes.
func (c TLSCerts) ClientConfig() *tls.Config {
	cfg := &tls.Config{RootCAs: c.CAPool, MinVersion: tls.VersionTLS12}
	if cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err == nil {
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
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
// connections (--port 0 --tls-port Port, --tls-auth-clients no). It is a
// Server whose helpers (Dial, Conn, Call, Do, Info, CommandStats, Stop,
// Restart, …) all talk TLS to it.
type TLSServer struct {
	*Server
	// Client is the TLS configuration the helpers dial with (it trusts
	// the server's CA). Do not modify it.
	Client *tls.Config
}

// newTLSServer wraps s, a server started with TLS certificates.
func newTLSServer(s *Server) *TLSServer { return &TLSServer{Server: s, Client: s.tlsConfig} }

// StartTLSStandalone starts a TLS-only standalone redis-server with certs
// on a free loopback port and waits until it answers PING over TLS. Extra
// args are appended. The caller must call Close.
func StartTLSStandalone(certs TLSCerts, args ...string) (*TLSServer, error) {
	s, err := startWith(&certs, 0, func(string, []int) []string { return args })
	if err != nil {
		return nil, err
	}
	return newTLSServer(s), nil
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

// TLSCluster is a Redis Cluster of three primaries with one replica each,
// every node TLS-only: clients, the cluster bus (--tls-cluster yes) and
// replication (--tls-replication yes) all use TLS. Slots are assigned as in
// Cluster; Replicas[i] replicates Primaries[i]. It offers the read-only
// helpers of Cluster; its topology is not meant to be changed.
type TLSCluster struct {
	Primaries []*TLSServer
	Replicas  []*TLSServer

	cluster *Cluster               // the nodes, formed and checked as a Cluster
	wrapper map[*Server]*TLSServer // cluster node -> its TLSServer
}

// StartTLSCluster starts six TLS-only cluster nodes with certs, forms the
// cluster and waits until every node reports cluster_state:ok and sees every
// replica attached. The caller must call Close.
func StartTLSCluster(certs TLSCerts, args ...string) (*TLSCluster, error) {
	cl, err := startCluster(&certs, args)
	if err != nil {
		return nil, err
	}
	c := &TLSCluster{cluster: cl, wrapper: make(map[*Server]*TLSServer)}
	wrap := func(nodes []*Server) []*TLSServer {
		ws := make([]*TLSServer, len(nodes))
		for i, s := range nodes {
			ws[i] = newTLSServer(s)
			c.wrapper[s] = ws[i]
		}
		return ws
	}
	c.Primaries = wrap(cl.Primaries)
	c.Replicas = wrap(cl.Replicas)
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

// Nodes returns the primaries followed by the replicas.
func (c *TLSCluster) Nodes() []*TLSServer {
	return append(append([]*TLSServer(nil), c.Primaries...), c.Replicas...)
}

// Addrs returns the addresses of Nodes, primaries first.
func (c *TLSCluster) Addrs() []string { return c.cluster.Addrs() }

// NodeID returns the cluster node ID of s.
func (c *TLSCluster) NodeID(s *TLSServer) string {
	if s == nil {
		return ""
	}
	return c.cluster.NodeID(s.Server)
}

// OwnerOf returns the primary serving slot (see Cluster.OwnerOf).
func (c *TLSCluster) OwnerOf(t testing.TB, slot int) *TLSServer {
	t.Helper()
	return c.wrapper[c.cluster.OwnerOf(t, slot)]
}

// FlushAll empties every primary and waits until its replica applied it.
func (c *TLSCluster) FlushAll(t testing.TB) { t.Helper(); c.cluster.FlushAll(t) }

// ResetStats clears the statistics of every node.
func (c *TLSCluster) ResetStats(t testing.TB) { t.Helper(); c.cluster.ResetStats(t) }

// CommandStats returns the sum of the primaries' command statistics.
func (c *TLSCluster) CommandStats(t testing.TB) map[string]int64 {
	t.Helper()
	return c.cluster.CommandStats(t)
}

// Close stops every node and removes their directories; safe to call twice.
func (c *TLSCluster) Close() error { return c.cluster.Close() }
