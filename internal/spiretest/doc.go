// Package spiretest runs a real SPIRE server and agent (v1.13.3) for
// integration and end-to-end tests: one server per test, any number of
// agents attached to it, each with its own data folders, TCP port and
// TMPDIR, and all of them stopped with SIGTERM when the test ends.
//
// A typical test:
//
//	func TestIdentity(t *testing.T) {
//		srv := spiretest.StartServer(t, spiretest.Options{})
//		agent := srv.StartAgent(t, spiretest.AgentOptions{})
//		srv.CreateEntry(t, "spiffe://example.org/workload/me", agent.NodeID.String(),
//			fmt.Sprintf("unix:uid:%d", os.Getuid()))
//		svid := agent.WaitX509SVID(t, 10*time.Second, nil)
//		// svid.ID is spiffe://example.org/workload/me
//	}
//
// External plugins are added as HCL blocks, rendered by [PluginBlock] from a
// binary that [BuildCmd] builds from this repository:
//
//	attestor := spiretest.BuildCmd(t, "./cmd/agentid-attestor")
//	agent := srv.StartAgent(t, spiretest.AgentOptions{
//		Plugins: spiretest.PluginBlock(t, "WorkloadAttestor", "agentid", attestor,
//			`manifest_dir = "/some/dir"`),
//	})
//
// Several servers of one trust domain given the same shared database in
// Options.DataStore (e.g. PostgreSQL) form a SPIRE HA cluster; their
// agents then need distinct AgentOptions.NodeName values.
//
// The SPIRE binaries come from [Bin]: $AGENTID_SPIRE_BIN, or the
// repository's .cache/spire/v1.13.3/bin, built with `make spire` on first use.
//
// Timings on a 2-core machine: the server is healthy about 0.1 s after
// start, an agent about 0.1 s after start, a new or deleted entry shows at
// the Workload API about 1 s later (cache_reload_interval and sync_interval
// are 1 s), and a restarted agent serves its cached SVIDs at once.
// Nothing here sleeps for a fixed time: every wait polls with a deadline and
// fails the test with the last error. When a test fails, the tail of each
// SPIRE log (without debug lines) is printed; set $SPIRETEST_KEEP to keep
// the whole scratch folder.
//
// A caller without a matching entry gets the gRPC status PermissionDenied,
// "no identity issued", from the Workload API.
package spiretest
