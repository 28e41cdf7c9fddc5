package registrar

import (
	"context"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	testPolicy = "testdata/policy.hcl"
	testPrompt = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	testNode   = "spiffe://example.org/spire/agent/join_token/node1"
	alice      = "spiffe://example.org/user/alice"
)

var (
	testTD  = spiffeid.RequireTrustDomainFromString("example.org")
	testNow = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
)

type fixture struct {
	r  *Registrar
	fe *fakeentry.Server
}

// newFixture serves a fake Entry API and a registrar on it with the test
// policy and clock; dial options (interceptors) may be added.
func newFixture(t testing.TB, opts []Option, dial ...grpc.DialOption) *fixture {
	t.Helper()
	fe := fakeentry.Start(t)
	conn, err := grpc.NewClient(fe.Addr(), append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p, err := LoadPolicy(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]Option{WithClock(func() time.Time { return testNow })}, opts...)
	return &fixture{r: New(conn, testTD, p, opts...), fe: fe}
}

func plannerRequest(task string) Request {
	return Request{
		Agent: "planner", Task: task, Model: "openai/gpt-4o", Prompt: testPrompt,
		Scope: []string{"kb:read", "web:search"}, Principal: alice,
		TTL: 3 * time.Hour, ParentID: testNode,
	}
}

func (f *fixture) mustCreate(t testing.TB, req Request) Task {
	t.Helper()
	task, err := f.r.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func (f *fixture) mustChild(t testing.TB, parent Task, req Request) Task {
	t.Helper()
	task, err := f.r.CreateChild(context.Background(), parent.ID, req)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func childRequest(agent, task string, scope ...string) Request {
	return Request{Agent: agent, Task: task, Model: "openai/gpt-4o", Prompt: testPrompt, Scope: scope}
}

func taskIDs(tasks []Task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID.String()
	}
	return out
}

func parseID(s string) (spiffeid.ID, error) { return spiffeid.FromString(s) }
