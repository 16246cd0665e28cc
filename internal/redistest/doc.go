// Package redistest starts real redis-server processes for tests.
//
// Every server binds 127.0.0.1 on a free port, keeps its files in a fresh
// temporary directory, persists nothing (--save "" --appendonly no) and is
// stopped by PID when the test (or the TestMain that started it) is done.
// Nothing is ever killed by name.
//
// Three topologies are offered:
//
//   - Standalone / StartStandalone: one server.
//   - PrimaryReplica / StartPrimaryReplica: a primary and one attached replica.
//   - NewCluster / StartCluster: a Redis Cluster of three primaries, each with
//     one replica, plus helpers to migrate slots and fail over primaries.
//
// NewTwemproxy puts a real nutcracker (twemproxy) in front of a server, for
// tests of rbatch through a proxy; Proxy is an in-process TCP proxy that
// injects faults (delays, stalls, cuts).
//
// The functions that take a testing.TB fail the test on error and register a
// cleanup; the Start* functions return errors instead and are meant for a
// TestMain that shares one server (or cluster) between the tests of a
// package:
//
//	var srv *redistest.Server
//
//	func TestMain(m *testing.M) {
//		var err error
//		srv, err = redistest.StartStandalone()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		srv.Close()
//		os.Exit(code)
//	}
//
// redis-server (and, for NewTwemproxy, nutcracker) must be on PATH; the
// tests fail (they are never skipped) with a hint on how to install it when
// it is not.
package redistest
