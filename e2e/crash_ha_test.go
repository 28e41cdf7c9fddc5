package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestHAServerCrashDuringBatches is TestServerCrashDuringBatches on the
// scale-out set-up: two SPIRE servers of one trust domain on one
// PostgreSQL datastore, a registrar on each. Two callers write batches of
// tasks (CreateBatch): caller A through server 1's registrar, retrying a
// failed batch through the other registrar (as a caller behind a load
// balancer would), caller B through server 2's only. Server 1 is killed
// with SIGKILL while A's batches are written, then restarted. Afterwards
// both servers list every acknowledged task once, as acknowledged; every
// entry decodes, and in the datastore every task entry has all its
// selectors (none half-created); the retried batches created every task
// exactly once, never a conflict — also where a batch written by server 1
// before the kill is retried through server 2. Caller B never failed:
// server 2 kept writing while server 1 was down.
func TestHAServerCrashDuringBatches(t *testing.T) {
	pg := startPostgres(t, "spire")
	opts := spiretest.Options{LogLevel: "WARN", EventsBasedCache: true, DataStore: pg.SPIREDataStore()}
	srv1 := spiretest.StartServer(t, opts)
	srv2 := spiretest.StartServer(t, opts)
	pol, err := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
	if err != nil {
		t.Fatal(err)
	}
	regs := [2]*registrar.Registrar{
		registrar.New(srv1.Dial(t), srv1.TrustDomain, pol),
		registrar.New(srv2.Dial(t), srv2.TrustDomain, pol),
	}
	const batches, per = 30, 20
	deadline := time.Unix(time.Now().Add(time.Hour).Unix(), 0).UTC()
	node := "spiffe://example.org/agent/node-1"
	req := func(caller string, b, i int) registrar.Request {
		return registrar.Request{Agent: "planner", Task: fmt.Sprintf("%s-%d-%d", caller, b, i), Model: "openai/gpt-4o", Prompt: digest,
			Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", Deadline: deadline, ParentID: node}
	}
	var mu sync.Mutex
	acked := map[string]string{} // task → entry ID, as acknowledged
	failures := map[string]int{} // caller → failed creates
	crossed := 0                 // creates of A acknowledged through server 2 after failing on server 1
	crashed := make(chan struct{})
	var wg sync.WaitGroup
	// write runs one caller: its batches through regs[home], a failed
	// batch retried (same requests) through the other registrar if
	// failover is set, else through the same one.
	write := func(caller string, home int, failover bool) {
		defer wg.Done()
		for b := range batches {
			if b == 5 && caller == "A" {
				close(crashed) // the kill comes while batch 5 and later are written
			}
			reqs := make([]registrar.Request, per)
			for i := range reqs {
				reqs[i] = req(caller, b, i)
			}
			at, failedOn1 := home, false
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res := regs[at].CreateBatch(ctx, reqs)
				cancel()
				pending := reqs[:0:0]
				mu.Lock()
				for i, x := range res {
					if x.Err != nil {
						if registrar.ReasonOf(x.Err) == registrar.ReasonConflict {
							t.Errorf("retry of %s through server %d: %v", reqs[i].Task, at+1, x.Err)
						}
						failures[caller]++
						pending = append(pending, reqs[i])
						continue
					}
					task := x.Task.Claims.Task
					if prev, ok := acked[task]; ok && prev != x.Task.EntryID {
						t.Errorf("%s acknowledged as entry %s, then as %s", task, prev, x.Task.EntryID)
					}
					acked[task] = x.Task.EntryID
					if failedOn1 && at == 1 {
						crossed++
					}
				}
				mu.Unlock()
				if len(pending) == 0 {
					break
				}
				if attempt == 200 {
					t.Errorf("caller %s batch %d: %d tasks still failing after 200 attempts: %v", caller, b, len(pending), res[0].Err)
					return
				}
				if at == 0 {
					failedOn1 = true
				}
				if failover {
					at = 1 - at
				}
				reqs = pending
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	wg.Add(2)
	go write("A", 0, true)
	go write("B", 1, false)
	<-crashed
	time.Sleep(150 * time.Millisecond)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	srv1.Crash(t)
	t.Logf("spire-server 1 killed with SIGKILL after %d tasks were acknowledged", before)
	time.Sleep(time.Second)
	srv1.Restart(t)
	wg.Wait()

	// Both servers list every acknowledged task once, as acknowledged;
	// every entry decodes; every task of every batch was created.
	const want = 2 * batches * per
	for k, r := range regs {
		l, err := r.List(context.Background(), registrar.Filter{})
		if err != nil {
			t.Fatalf("list through server %d: %v", k+1, err)
		}
		if len(l.Invalid) > 0 {
			t.Errorf("server %d: %d entries do not decode after the crash: %+v", k+1, len(l.Invalid), l.Invalid)
		}
		have := map[string][]string{}
		for _, task := range l.Tasks {
			have[task.Claims.Task] = append(have[task.Claims.Task], task.EntryID)
			if task.Claims.Model != "openai/gpt-4o" || !task.Claims.Deadline.Equal(deadline) {
				t.Errorf("server %d: task %s: claims %+v", k+1, task.ID, task.Claims)
			}
		}
		for task, entry := range acked {
			if got := have[task]; len(got) != 1 || got[0] != entry {
				t.Errorf("server %d: acknowledged task %s (entry %s): entries %v after the crash", k+1, task, entry, got)
			}
		}
		if len(acked) != want || len(have) != want || len(l.Tasks) != want {
			t.Errorf("server %d: %d acknowledged, %d tasks with entries, %d entries; want %d of each", k+1, len(acked), len(have), len(l.Tasks), want)
		}
	}

	// In the datastore itself: exactly the tasks' entries, each with all
	// the selectors the registrar writes, and no selector without its
	// entry (what a half-written create would leave).
	c := svid.Claims{V: svid.Version, Agent: "planner", Task: "A-0-0", Model: "openai/gpt-4o", Prompt: digest,
		Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", Deadline: deadline}
	e, err := regs[0].RenderEntry(c, spiffeid.RequireFromString(node))
	if err != nil {
		t.Fatal(err)
	}
	sels := len(e.GetSelectors())
	for _, q := range []struct{ what, sql, want string }{
		{"task entries", "SELECT count(*) FROM registered_entries WHERE spiffe_id LIKE 'spiffe://example.org/agent/planner/task/%'", strconv.Itoa(want)},
		{"entries without all their selectors", fmt.Sprintf("SELECT count(*) FROM registered_entries e WHERE (SELECT count(*) FROM selectors s WHERE s.registered_entry_id = e.id) <> %d", sels), "0"},
		{"selectors without an entry", "SELECT count(*) FROM selectors s WHERE NOT EXISTS (SELECT 1 FROM registered_entries e WHERE e.id = s.registered_entry_id)", "0"},
	} {
		out, err := pg.cmd(30*time.Second, "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-d", pg.Database, "-tAc", q.sql)
		if err != nil {
			t.Fatalf("psql %s: %v\n%s", q.sql, err, out)
		}
		if got := strings.TrimSpace(out); got != q.want {
			t.Errorf("datastore: %s: %s, want %s", q.what, got, q.want)
		}
	}

	t.Logf("%d tasks acknowledged before the kill, %d in all; failed creates retried: A %d (%d then acknowledged through server 2), B %d",
		before, len(acked), failures["A"], crossed, failures["B"])
	if failures["A"] == 0 {
		t.Errorf("no create of caller A failed: the kill did not hit its batches")
	}
	if failures["B"] != 0 {
		t.Errorf("caller B (server 2 only) saw %d failed creates: server 2 did not keep writing while server 1 was down", failures["B"])
	}
}
