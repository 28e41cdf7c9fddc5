package composer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/composer"
	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
)

const testPrompt = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	testNow  = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	deadline = testNow.Add(time.Hour)
)

func taskID(agent, task string) spiffeid.ID {
	id, err := svid.TaskID(td, agent, task)
	if err != nil {
		panic(err)
	}
	return id
}

// root is a root task of the planner.
func root(task string) svid.Claims {
	return svid.Claims{V: svid.Version, Agent: "planner", Task: task, Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read", "web:search"},
		Principal: "spiffe://example.org/user/alice", Deadline: deadline}
}

// delegated is a researcher task delegated by T-1 then T-2.
func delegated(task string) svid.Claims {
	c := root(task)
	c.Agent, c.Scope = "researcher", []string{"kb:read"}
	c.Chain = []string{taskID("planner", "T-1").String(), taskID("writer", "T-2").String()}
	return c
}

// entryOf renders claims as the registrar does: one selector per value of
// the given type, expires_at = deadline, plus extra selectors.
func entryOf(c svid.Claims, typ string, extra ...*types.Selector) *types.Entry {
	id := taskID(c.Agent, c.Task)
	e := &types.Entry{
		SpiffeId:  &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/spire/agent/join_token/node1"},
		ExpiresAt: c.Deadline.Unix(),
	}
	for _, v := range c.Selectors() {
		e.Selectors = append(e.Selectors, &types.Selector{Type: typ, Value: v})
	}
	e.Selectors = append(e.Selectors, extra...)
	return e
}

// scopedEntryOf is entryOf in the task-scoped layout the registrar writes
// (svid.Claims.ScopedSelectors); entryOf is the v1 layout, still read.
func scopedEntryOf(c svid.Claims, typ string, extra ...*types.Selector) *types.Entry {
	e := entryOf(c, typ)
	e.Selectors = nil
	for _, v := range c.ScopedSelectors() {
		e.Selectors = append(e.Selectors, &types.Selector{Type: typ, Value: v})
	}
	e.Selectors = append(e.Selectors, extra...)
	return e
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: testNow} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustConfig(t testing.TB, hcl string) *composer.Config {
	t.Helper()
	cfg, err := composer.ParseConfig(hcl, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newComposer serves a fake Entry API and returns a composer reading it
// through a real gRPC client, with hcl as configuration (its socket is
// replaced by the fake's) and clk as clock.
func newComposer(t testing.TB, hcl string, clk *clock) (*composer.Composer, *fakeentry.Server) {
	t.Helper()
	fe := fakeentry.Start(t)
	cfg := mustConfig(t, hcl)
	cfg.ServerAPISocket = fe.SocketPath
	conn, err := composer.Dial(cfg.Target())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := composer.New(cfg, composer.NewAPISource(entryv1.NewEntryClient(conn)), composer.WithClock(clk.Now))
	return c, fe
}

// memSource is an in-memory EntrySource for benchmarks and examples.
type memSource map[string][]*types.Entry

func (m memSource) EntriesByID(_ context.Context, id spiffeid.ID) ([]*types.Entry, error) {
	return m[id.String()], nil
}

func (m memSource) add(e *types.Entry) {
	id := "spiffe://" + e.SpiffeId.TrustDomain + e.SpiffeId.Path
	m[id] = append(m[id], e)
}

func entryClientOf(conn *grpc.ClientConn) entryv1.EntryClient { return entryv1.NewEntryClient(conn) }

func deleteEntries(t testing.TB, fe *fakeentry.Server, ids ...string) {
	t.Helper()
	if _, err := fe.BatchDeleteEntry(context.Background(), &entryv1.BatchDeleteEntryRequest{Ids: ids}); err != nil {
		t.Fatal(err)
	}
}
