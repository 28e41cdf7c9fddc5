package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
)

// racePolicy lets a planner delegate to researchers and a researcher to
// summarizers, two levels deep.
func racePolicy() string {
	var b strings.Builder
	agents := []string{"planner", "researcher", "summarizer"}
	for i, a := range agents {
		fmt.Fprintf(&b, "agent %q {\n  models = [\"openai/gpt-4o\"]\n  prompts = [\"*\"]\n  scopes = [\"kb:read\"]\n"+
			"  principals = [\"spiffe://example.org/user/*\"]\n  max_ttl = \"1h\"\n  max_depth = 2\n", a)
		if i > 0 {
			fmt.Fprintf(&b, "  delegators = [%q]\n", agents[i-1])
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// TestRevokeRaceNoOrphans: on a real SPIRE server, delegators keep
// creating researchers under a root planner and summarizers under those
// researchers, through two registrars (each its own connection), while
// the root is revoked. After the revoke returns and every delegation in
// flight has ended, no entry whose chain names the root may be left. Trials
// run several at a time against the one server. AGENTID_RACE_TRIALS sets
// the number of trials (default 100).
func TestRevokeRaceNoOrphans(t *testing.T) {
	trials := 100
	if s := os.Getenv("AGENTID_RACE_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("AGENTID_RACE_TRIALS=%q", s)
		}
		trials = n
	}
	const parallel, delegators = 8, 3
	srv := spiretest.StartServer(t, spiretest.Options{LogLevel: "WARN"})
	pol, err := registrar.ParsePolicy([]byte(racePolicy()), "race.hcl")
	if err != nil {
		t.Fatal(err)
	}
	regs := []*registrar.Registrar{
		registrar.New(srv.Dial(t), srv.TrustDomain, pol),
		registrar.New(srv.Dial(t), srv.TrustDomain, pol),
	}
	entries := entryv1.NewEntryClient(srv.Dial(t))
	ctx := context.Background()

	var orphanTrials, orphans, created, refused atomic.Int64
	start := time.Now()
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for trial := range trials {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			root, err := regs[trial%2].Create(ctx, registrar.Request{
				Agent: "planner", Model: "openai/gpt-4o", Prompt: digest, Scope: []string{"kb:read"},
				Principal: "spiffe://example.org/user/alice", TTL: time.Hour, ParentID: "spiffe://example.org/agent/node-1",
			})
			if err != nil {
				t.Error(err)
				return
			}
			// Delegators delegate until the root is gone (at most 50 times
			// each); the revoke starts once two of them have a child.
			ready := make(chan struct{}, delegators)
			var dwg sync.WaitGroup
			for d := range delegators {
				dwg.Add(1)
				go func() {
					defer dwg.Done()
					var once sync.Once
					signal := func() { once.Do(func() { ready <- struct{}{} }) }
					defer signal()
					r := regs[(trial+d)%2]
					for range 50 {
						c, err := r.CreateChild(ctx, root.ID, registrar.Request{Agent: "researcher", Model: "openai/gpt-4o",
							Prompt: digest, Scope: []string{"kb:read"}})
						if !delegated(t, err, &refused) {
							return
						}
						created.Add(1)
						signal()
						if _, err := regs[(trial+d+1)%2].CreateChild(ctx, c.ID, registrar.Request{Agent: "summarizer",
							Model: "openai/gpt-4o", Prompt: digest, Scope: []string{"kb:read"}}); delegated(t, err, &refused) {
							created.Add(1)
						}
					}
				}()
			}
			<-ready
			<-ready
			if _, err := regs[(trial+1)%2].Revoke(ctx, root.ID); err != nil {
				t.Errorf("revoke %s: %v", root.ID, err)
			}
			dwg.Wait()
			left, err := descendantsOf(ctx, entries, root.ID)
			if err != nil {
				t.Error(err)
				return
			}
			if len(left) > 0 {
				orphanTrials.Add(1)
				orphans.Add(int64(len(left)))
				t.Errorf("trial %d: %d entries whose chain names the revoked %s: %v", trial, len(left), root.ID, left)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d trials (%d at a time, %d delegators each) in %s: %d delegations created, %d refused or removed because an ancestor was revoked; %d trials with orphans, %d orphans",
		trials, parallel, delegators, time.Since(start).Round(time.Millisecond), created.Load(), refused.Load(), orphanTrials.Load(), orphans.Load())
}

// delegated reports whether a delegation succeeded and counts those
// refused because the parent or an ancestor is gone; another error is a
// test error.
func delegated(t *testing.T, err error, refused *atomic.Int64) bool {
	switch registrar.ReasonOf(err) {
	case 0:
		if err == nil {
			return true
		}
	case registrar.ReasonParentNotFound:
		refused.Add(1)
		return false
	}
	t.Errorf("delegation: %v", err)
	return false
}

// descendantsOf lists, straight from SPIRE, the entries whose chain holds
// id at depth 0: every entry is read and its selectors tested, in either
// layout (delegator:0:<id>, or task:<t>:delegator:0:<id> in the
// task-scoped one), so that the check relies on nothing the registrar
// writes to find them (its hint).
func descendantsOf(ctx context.Context, c entryv1.EntryClient, id spiffeid.ID) ([]string, error) {
	var out []string
	req := &entryv1.ListEntriesRequest{PageSize: 1000}
	for {
		resp, err := c.ListEntries(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list descendants of %s: %w", id, err)
		}
		for _, e := range resp.GetEntries() {
			for _, s := range e.GetSelectors() {
				v := s.GetValue()
				if s.GetType() == svid.DefaultSelectorType && (v == "delegator:0:"+id.String() ||
					strings.HasPrefix(v, "task:") && strings.HasSuffix(v, ":delegator:0:"+id.String())) {
					out = append(out, e.GetSpiffeId().GetPath())
					break
				}
			}
		}
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}
