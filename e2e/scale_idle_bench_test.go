package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
)

// BenchmarkServerIdle measures what live tasks cost an idle SPIRE server
// (sqlite; AGENTID_SCALE_DATASTORE=postgres: PostgreSQL, whose processes'
// CPU is reported apart): for the largest size of AGENTID_SCALE_SIZES (default 10000)
// task entries in the registrar's layout, with a full entry-cache reload
// every second (cache_reload_interval = "1s", the setting before issue 18)
// and with events_based_cache (what agentid dev runs): the server's CPU
// over 20 s without a call (fraction of one core, from /proc/<pid>/stat),
// its RSS, and the datastore's size per task. Run it once:
//
//	go test -run '^$' -bench BenchmarkServerIdle -benchtime 1x -timeout 60m ./e2e/
func BenchmarkServerIdle(b *testing.B) {
	sizes := scaleSizes(b)
	size := sizes[len(sizes)-1]
	for _, events := range []bool{false, true} {
		b.Run(fmt.Sprintf("events=%v", events), func(b *testing.B) {
			for b.Loop() {
				opts := spiretest.Options{LogLevel: "WARN", EventsBasedCache: events}
				pg := scalePostgres(b, &opts)
				srv := spiretest.StartServer(b, opts)
				conn := srv.Dial(b)
				pol, _ := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
				r := registrar.New(conn, srv.TrustDomain, pol)
				client := entryv1.NewEntryClient(conn)
				node := spiffeid.RequireFromString("spiffe://example.org/agent/node-1")
				deadline := time.Unix(time.Now().Add(3*time.Hour).Unix(), 0).UTC()
				fillTasks(context.Background(), b, r, client, node, deadline, 0, size, scaleClaims)
				if pg != nil {
					waitAutoAnalyze(b, pg) // not autovacuum's work in the window
				}
				time.Sleep(3 * time.Second)
				const window = 20 * time.Second
				t0, d0 := cpuTicks(b, srv.Pid()), pgTicks(b, pg)
				time.Sleep(window)
				cpu := float64(cpuTicks(b, srv.Pid())-t0) / 100 / window.Seconds() // USER_HZ = 100
				dbCPU := float64(pgTicks(b, pg)-d0) / 100 / window.Seconds()
				rss := rssKiB(b, srv.Pid())
				size0 := float64(datastoreBytes(b, srv, pg))
				b.ReportMetric(cpu, "idle-cores")
				if pg != nil {
					b.ReportMetric(dbCPU, "postgres-idle-cores")
				}
				b.ReportMetric(float64(rss)/1024, "rss-MiB")
				b.ReportMetric(size0/float64(size), "datastore-B/task")
				b.Logf("%s, events_based_cache=%v, %d live tasks: idle CPU %.3f of a core (PostgreSQL's processes: %.3f), RSS %.0f MiB, datastore %.1f MiB (%.0f B/task); load %s",
					datastoreName(), events, size, cpu, dbCPU, float64(rss)/1024, size0/(1<<20), size0/float64(size), loadAvg())
			}
		})
	}
}

// cpuTicks is the user + system CPU time of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// fields after the ")" that ends comm: state is field 3; utime 14, stime 15
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// rssKiB is the resident set size of pid.
func rssKiB(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// pgTicks is the CPU time of PostgreSQL's processes in clock ticks: the
// postmaster's, its live children's, and (cutime, cstime) that of the
// children it has reaped — backends come and go; 0 for a nil cluster.
func pgTicks(b *testing.B, pg *postgres) int64 {
	if pg == nil {
		return 0
	}
	root := pg.server.Process.Pid
	var total int64
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range dirs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		// fields after the ")" that ends comm: ppid is field 4; utime,
		// stime, cutime, cstime 14-17
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		pid, _ := strconv.Atoi(strings.Fields(string(data))[0])
		ppid, _ := strconv.Atoi(fields[1])
		if pid != root && ppid != root {
			continue
		}
		last := 12
		if pid == root {
			last = 14
		}
		for _, v := range fields[11 : last+1] {
			n, _ := strconv.ParseInt(v, 10, 64)
			total += n
		}
	}
	if total == 0 {
		b.Fatalf("no CPU time found for PostgreSQL (pid %d)", root)
	}
	return total
}
