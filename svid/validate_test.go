package svid_test

import (
	"errors"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestValidate(t *testing.T) {
	other := spiffeid.RequireTrustDomainFromString("partner.example")
	tests := []struct {
		name   string
		edit   func(*svid.Claims)
		id     string
		opts   []svid.Option
		reason svid.Reason
	}{
		{name: "valid delegated task"},
		{name: "valid root task", edit: func(c *svid.Claims) { c.Chain = nil }},
		{name: "one second before deadline", opts: []svid.Option{svid.WithTime(deadline.Add(-time.Second))}},
		{name: "at deadline", opts: []svid.Option{svid.WithTime(deadline)}, reason: svid.ReasonExpired},
		{name: "after deadline", opts: []svid.Option{svid.WithClock(func() time.Time { return deadline.Add(time.Hour) })}, reason: svid.ReasonExpired},
		{name: "agent disagrees with path", id: "spiffe://example.org/agent/planner/task/T-42", reason: svid.ReasonIDMismatch},
		{name: "task disagrees with path", id: "spiffe://example.org/agent/researcher/task/T-99", reason: svid.ReasonIDMismatch},
		{name: "not a task ID", id: "spiffe://example.org/workload/researcher", reason: svid.ReasonNotTaskID},
		{name: "task ID with extra segment", id: "spiffe://example.org/agent/researcher/task/T-42/x", reason: svid.ReasonNotTaskID},
		{name: "chain holds own ID", edit: func(c *svid.Claims) { c.Chain = append(c.Chain, selfID.String()) }, reason: svid.ReasonChainCycle},
		{name: "chain repeats", edit: func(c *svid.Claims) { c.Chain = append(c.Chain, plannerID) }, reason: svid.ReasonChainCycle},
		{name: "chain entry not a task", edit: func(c *svid.Claims) { c.Chain = []string{"spiffe://example.org/user/bob"} }, reason: svid.ReasonBadChainEntry},
		{name: "chain entry not a SPIFFE ID", edit: func(c *svid.Claims) { c.Chain = []string{"https://example.org/agent/a/task/b"} }, reason: svid.ReasonBadChainEntry},
		{name: "chain member foreign", edit: func(c *svid.Claims) { c.Chain = []string{"spiffe://partner.example/agent/planner/task/T-41"} }, reason: svid.ReasonForeignTrustDomain},
		{name: "chain member federated and allowed",
			edit: func(c *svid.Claims) { c.Chain = []string{"spiffe://partner.example/agent/planner/task/T-41"} },
			opts: []svid.Option{svid.WithTrustDomains(td, other)}},
		{name: "SVID in a foreign trust domain", id: "spiffe://partner.example/agent/researcher/task/T-42",
			opts: []svid.Option{svid.WithTrustDomains(td)}, reason: svid.ReasonForeignTrustDomain},
		{name: "unknown version", edit: func(c *svid.Claims) { c.V = 2 }, reason: svid.ReasonUnsupportedVersion},
		{name: "missing model", edit: func(c *svid.Claims) { c.Model = "" }, reason: svid.ReasonInvalidField},
		{name: "missing deadline", edit: func(c *svid.Claims) { c.Deadline = time.Time{} }, reason: svid.ReasonInvalidField},
		{name: "chain too long", edit: func(c *svid.Claims) {
			c.Chain = nil
			for i := range 17 {
				c.Chain = append(c.Chain, "spiffe://example.org/agent/a"+string(rune('a'+i))+"/task/t")
			}
		}, reason: svid.ReasonTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := researcher()
			if tc.edit != nil {
				tc.edit(&c)
			}
			id := selfID
			if tc.id != "" {
				id = spiffeid.RequireFromString(tc.id)
			}
			opts := append([]svid.Option{svid.WithTime(now)}, tc.opts...)
			wantReason(t, c.Validate(id, opts...), tc.reason)
		})
	}
}

func TestValidationErrorIs(t *testing.T) {
	err := researcher().Validate(selfID, svid.WithTime(deadline))
	if !errors.Is(err, &svid.ValidationError{Reason: svid.ReasonExpired}) {
		t.Fatalf("errors.Is by reason failed for %v", err)
	}
	if errors.Is(err, &svid.ValidationError{Reason: svid.ReasonMalformed}) {
		t.Fatal("errors.Is matched the wrong reason")
	}
	want := "svid: claims rejected: expired: deadline 2026-11-29T12:00:00Z passed at 2026-11-29T12:00:00Z"
	if err.Error() != want {
		t.Fatalf("message\n got %q\nwant %q", err, want)
	}
}

func TestReasonString(t *testing.T) {
	for r := svid.ReasonMalformed; r <= svid.ReasonActMismatch; r++ {
		if s := r.String(); s == "" || s[0] == 'r' && s[:7] == "reason(" {
			t.Errorf("reason %d has no name", int(r))
		}
	}
	if got := svid.Reason(99).String(); got != "reason(99)" {
		t.Errorf("unknown reason prints %q", got)
	}
}

func TestTaskID(t *testing.T) {
	id, err := svid.TaskID(td, "planner", "T-41")
	if err != nil || id.String() != plannerID {
		t.Fatalf("TaskID = %v, %v", id, err)
	}
	if _, err := svid.TaskID(td, "bad/agent", "T"); err == nil {
		t.Fatal("TaskID accepted a slash in the agent")
	}
	for _, s := range []string{"spiffe://example.org/agent/a/task/..", "spiffe://example.org/agent//task/x", "spiffe://example.org/agents/a/task/b"} {
		id, err := spiffeid.FromString(s)
		if err != nil {
			continue // not even a SPIFFE ID
		}
		if svid.IsTaskID(id) {
			t.Errorf("%s taken for a task ID", s)
		}
	}
}

func TestParseOID(t *testing.T) {
	oid, err := svid.ParseOID("1.3.6.1.4.1.32473.1.1")
	if err != nil || !oid.Equal(svid.DefaultOID) {
		t.Fatalf("ParseOID = %v, %v", oid, err)
	}
	for _, bad := range []string{"", "1", "1.x", "1.-2", "1.02", "3.1", "1.40", "2.25.329800735698586629295641978511506172918"} {
		if _, err := svid.ParseOID(bad); err == nil {
			t.Errorf("ParseOID(%q) accepted", bad)
		}
	}
}
