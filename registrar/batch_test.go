package registrar

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
)

// countCalls counts the calls of one Entry API method.
func countCalls(method string, n *atomic.Int64) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if m == method {
			n.Add(1)
		}
		return invoker(ctx, m, req, reply, cc, opts...)
	}
}

// TestCreateBatch: many root tasks in one call and one BatchCreateEntry,
// each request checked and answered on its own: a refusal, a task ID twice
// in the batch or a task that exists with other claims fail that request
// only; a task that exists with the same request (a retried batch) is
// returned as it is.
func TestCreateBatch(t *testing.T) {
	var creates atomic.Int64
	f := newFixture(t, nil, grpc.WithUnaryInterceptor(countCalls("/spire.api.server.entry.v1.Entry/BatchCreateEntry", &creates)))
	f.mustCreate(t, plannerRequest("same"))
	other := plannerRequest("other")
	other.Scope = []string{"kb:read"}
	f.mustCreate(t, other)
	creates.Store(0)

	refused := plannerRequest("refused")
	refused.Model = "anthropic/claude"
	reqs := []Request{plannerRequest("a"), plannerRequest("b"), refused, plannerRequest("a"),
		plannerRequest("same"), plannerRequest("other"), plannerRequest("c")}
	res := f.r.CreateBatch(context.Background(), reqs)
	if len(res) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(res), len(reqs))
	}
	want := []Reason{0, 0, ReasonModelNotAllowed, ReasonConflict, 0, ReasonConflict, 0}
	for i, r := range res {
		if ReasonOf(r.Err) != want[i] || (want[i] == 0 && (r.Err != nil || r.Task.Claims.Task != reqs[i].Task || r.Task.EntryID == "")) {
			t.Errorf("request %d (%s): task %+v, err %v; want reason %q", i, reqs[i].Task, r.Task.ID, r.Err, want[i])
		}
	}
	if n := creates.Load(); n != 1 {
		t.Errorf("%d BatchCreateEntry calls, want 1", n)
	}
	l, err := f.r.List(context.Background(), Filter{})
	if err != nil || len(l.Tasks) != 5 { // same, other, a, b, c
		t.Errorf("%d tasks after the batch, want 5: %v", len(l.Tasks), err)
	}
	if got := f.r.CreateBatch(context.Background(), nil); len(got) != 0 {
		t.Errorf("empty batch: %v", got)
	}
}
