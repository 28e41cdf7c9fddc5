package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
)

// TestServerCrashDuringBatches: a SPIRE server (sqlite) killed with SIGKILL
// while a registrar writes batches of tasks (CreateBatch), then restarted,
// loses no acknowledged task and leaves no half-created one; a caller that
// retries each batch with the same requests until it is acknowledged ends
// with every task created exactly once (retries are idempotent, never a
// conflict).
func TestServerCrashDuringBatches(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.Options{LogLevel: "WARN", EventsBasedCache: true})
	pol, err := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
	if err != nil {
		t.Fatal(err)
	}
	r := registrar.New(srv.Dial(t), srv.TrustDomain, pol)
	const batches, per = 30, 20
	deadline := time.Unix(time.Now().Add(time.Hour).Unix(), 0).UTC()
	req := func(b, i int) registrar.Request {
		return registrar.Request{Agent: "planner", Task: fmt.Sprintf("K-%d-%d", b, i), Model: "openai/gpt-4o", Prompt: digest,
			Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", Deadline: deadline,
			ParentID: "spiffe://example.org/agent/node-1"}
	}
	var mu sync.Mutex
	acked := map[string]string{} // task → entry ID, as acknowledged
	failures, crashed := 0, make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range batches {
			if b == 5 {
				close(crashed) // the crash comes while batch 5 and later are written
			}
			reqs := make([]registrar.Request, per)
			for i := range reqs {
				reqs[i] = req(b, i)
			}
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res := r.CreateBatch(ctx, reqs)
				cancel()
				pending := reqs[:0:0]
				mu.Lock()
				for i, x := range res {
					if x.Err != nil {
						if registrar.ReasonOf(x.Err) == registrar.ReasonConflict {
							t.Errorf("retry of %s: %v", reqs[i].Task, x.Err)
						}
						failures++
						pending = append(pending, reqs[i])
						continue
					}
					if prev, ok := acked[x.Task.Claims.Task]; ok && prev != x.Task.EntryID {
						t.Errorf("%s acknowledged as entry %s, then as %s", x.Task.Claims.Task, prev, x.Task.EntryID)
					}
					acked[x.Task.Claims.Task] = x.Task.EntryID
				}
				mu.Unlock()
				if len(pending) == 0 {
					break
				}
				if attempt == 200 {
					t.Errorf("batch %d: %d tasks still failing after 200 attempts: %v", b, len(pending), res[0].Err)
					return
				}
				reqs = pending
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	<-crashed
	time.Sleep(150 * time.Millisecond)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	srv.Crash(t)
	t.Logf("spire-server killed with SIGKILL after %d tasks were acknowledged", before)
	time.Sleep(time.Second)
	srv.Restart(t)
	<-done

	// Every acknowledged task is there, once, as acknowledged; every entry
	// decodes (none half-created); and the retried batches created every
	// task of every batch.
	l, err := r.List(context.Background(), registrar.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Invalid) > 0 {
		t.Errorf("%d entries do not decode after the crash: %+v", len(l.Invalid), l.Invalid)
	}
	have := map[string][]string{}
	for _, task := range l.Tasks {
		have[task.Claims.Task] = append(have[task.Claims.Task], task.EntryID)
		if want := req(0, 0); task.Claims.Model != want.Model || !task.Claims.Deadline.Equal(deadline) {
			t.Errorf("task %s: claims %+v", task.ID, task.Claims)
		}
	}
	for task, entry := range acked {
		if got := have[task]; len(got) != 1 || got[0] != entry {
			t.Errorf("acknowledged task %s (entry %s): entries %v after the crash", task, entry, got)
		}
	}
	if len(acked) != batches*per || len(have) != batches*per || len(l.Tasks) != batches*per {
		t.Errorf("%d acknowledged, %d tasks with entries, %d entries; want %d of each", len(acked), len(have), len(l.Tasks), batches*per)
	}
	t.Logf("%d tasks acknowledged before the kill, %d in all, %d failed attempts retried", before, len(acked), failures)
	if failures == 0 {
		t.Errorf("no create failed: the kill did not hit the batches")
	}
}
