package rbatch_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// BenchmarkClusterLatency runs a batch of 30,000 SETs over three primaries
// and the same batch on one primary, every node behind a proxy that adds
// 5 ms each way (a 10 ms round trip). The groups of a batch run at once, so
// the three-primary batch should take about one round trip, not three:
// compare the two ms/op figures.
func BenchmarkClusterLatency(b *testing.B) {
	cl := redistest.NewCluster(b)
	var seeds []string
	for _, p := range cl.Primaries {
		lp := startLatencyProxy(b, p.Addr, 5*time.Millisecond)
		_, port, _ := net.SplitHostPort(lp)
		// The node announces the proxy's port: the slot map and redirects lead there.
		p.MustDo(b, "CONFIG", "SET", "cluster-announce-port", port)
		seeds = append(seeds, lp)
	}
	waitAnnounced(b, cl, seeds)
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: seeds[:1]})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	const n = 30_000
	run := func(b *testing.B, key func(i int) string, wantNodes int) {
		for b.Loop() {
			bt := c.NewBatch()
			for i := range n {
				bt.Bucket(key(i)).SetAsync(i)
			}
			res, err := bt.Execute(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Nodes) != wantNodes {
				b.Fatalf("%d nodes, want %d", len(res.Nodes), wantNodes)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/batch")
	}
	b.Run("3-primaries", func(b *testing.B) { run(b, func(i int) string { return "lat:" + strconv.Itoa(i) }, 3) })
	b.Run("1-primary", func(b *testing.B) { run(b, func(i int) string { return "{lat}:" + strconv.Itoa(i) }, 1) })
}

// waitAnnounced waits until every primary's slot map names the proxies.
func waitAnnounced(b *testing.B, cl *redistest.Cluster, proxies []string) {
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range cl.Primaries {
		for {
			text, _ := redis.String(p.Call("CLUSTER", "NODES"))
			all := true
			for _, lp := range proxies {
				all = all && strings.Contains(text, lp+"@")
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s does not announce the proxies yet:\n%s", p.Addr, text)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// startLatencyProxy forwards loopback connections to target, delivering
// each chunk delay after it arrived, in both directions: latency without a
// bandwidth limit (chunks in flight overlap). It stops with the benchmark.
func startLatencyProxy(b *testing.B, target string, delay time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); delayCopy(server, client, delay) }()
			go func() { defer wg.Done(); delayCopy(client, server, delay) }()
		}
	}()
	return ln.Addr().String()
}

// delayCopy copies src to dst, each chunk delay after it was read.
func delayCopy(dst io.WriteCloser, src io.ReadCloser, delay time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	for range q { // let the reader finish
	}
}
