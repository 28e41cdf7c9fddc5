package svid_test

import (
	"slices"
	"testing"

	"github.com/agentid/agentid/svid"
)

func TestSelectorsContract(t *testing.T) {
	c := researcher()
	c.Chain = []string{"spiffe://example.org/agent/root/task/R", plannerID}
	want := []string{
		"task:T-42", "agent:researcher", "model:openai/gpt-4o", "prompt:" + digest,
		"scope:kb:read", "principal:spiffe://example.org/user/alice",
		"delegator:0:spiffe://example.org/agent/root/task/R", "delegator:1:" + plannerID, "depth:2",
	}
	if got := c.Selectors(); !slices.Equal(got, want) {
		t.Fatalf("selectors\n got %q\nwant %q", got, want)
	}
	shuffled := slices.Clone(want)
	slices.Reverse(shuffled)
	back, err := svid.FromSelectors(shuffled, deadline)
	if err != nil || !back.Equal(c) {
		t.Fatalf("FromSelectors = %+v, %v", back, err)
	}
}

func TestFromSelectorsRejects(t *testing.T) {
	base := researcher().Selectors()
	without := func(prefix string) []string {
		return slices.DeleteFunc(slices.Clone(base), func(s string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix })
	}
	tests := []struct {
		name   string
		in     []string
		reason svid.Reason
	}{
		{"unknown key", append(slices.Clone(base), "admin:yes"), svid.ReasonMalformed},
		{"task twice", append(slices.Clone(base), "task:T-43"), svid.ReasonMalformed},
		{"depth missing", without("depth:"), svid.ReasonMalformed},
		{"depth disagrees", append(without("depth:"), "depth:2"), svid.ReasonMalformed},
		{"delegator gap", append(without("delegator:"), "delegator:1:"+plannerID), svid.ReasonMalformed},
		{"delegator index not a number", append(without("delegator:"), "delegator:x:"+plannerID), svid.ReasonMalformed},
		{"delegator repeated", append(slices.Clone(base), "delegator:0:"+plannerID), svid.ReasonMalformed},
		{"model missing", without("model:"), svid.ReasonInvalidField},
		{"delegator not a task ID", append(without("delegator:"), "delegator:0:spiffe://example.org/user/bob"), svid.ReasonBadChainEntry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svid.FromSelectors(tc.in, deadline)
			wantReason(t, err, tc.reason)
		})
	}
}

// TestExeSelector: the executable pin is a task selector outside the
// claims: FromSelectors accepts one well-formed pin and ignores it.
func TestExeSelector(t *testing.T) {
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	if got := svid.ExeSelector(sum); got != "exe:sha256:"+sum {
		t.Fatalf("ExeSelector = %q", got)
	}
	if d, ok := svid.ParseExeSelector("exe:sha256:" + sum); !ok || d != sum {
		t.Errorf("ParseExeSelector = %q, %v", d, ok)
	}
	c := researcher()
	back, err := svid.FromSelectors(append(c.Selectors(), svid.ExeSelector(sum)), deadline)
	if err != nil || !back.Equal(c) {
		t.Fatalf("FromSelectors with an exe pin = %+v, %v", back, err)
	}
	for _, bad := range [][]string{
		{"exe:sha256:XYZ"}, {"exe:md5:" + sum}, {svid.ExeSelector(sum), svid.ExeSelector(sum)},
	} {
		_, err := svid.FromSelectors(append(c.Selectors(), bad...), deadline)
		wantReason(t, err, svid.ReasonMalformed)
	}
}

// TestScopedSelectorsContract: the v2 layout. Every value starts with the
// task selector task:<id>, so that no selector is shared by two tasks:
// SPIRE's duplicate check and its agents' "wanted" test then touch this
// task's entry only, however many tasks share a model or a principal.
func TestScopedSelectorsContract(t *testing.T) {
	c := researcher()
	c.Chain = []string{"spiffe://example.org/agent/root/task/R", plannerID}
	want := []string{
		"task:T-42", "task:T-42:agent:researcher", "task:T-42:model:openai/gpt-4o", "task:T-42:prompt:" + digest,
		"task:T-42:scope:kb:read", "task:T-42:principal:spiffe://example.org/user/alice",
		"task:T-42:delegator:0:spiffe://example.org/agent/root/task/R", "task:T-42:delegator:1:" + plannerID, "task:T-42:depth:2",
	}
	if got := c.ScopedSelectors(); !slices.Equal(got, want) {
		t.Fatalf("selectors\n got %q\nwant %q", got, want)
	}
	shuffled := slices.Clone(want)
	slices.Reverse(shuffled)
	back, err := svid.FromSelectors(shuffled, deadline)
	if err != nil || !back.Equal(c) {
		t.Fatalf("FromSelectors = %+v, %v", back, err)
	}
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	pin := svid.ScopedExeSelector("T-42", sum)
	if pin != "task:T-42:exe:sha256:"+sum {
		t.Fatalf("ScopedExeSelector = %q", pin)
	}
	if d, ok := svid.ParseExeSelector(pin); !ok || d != sum {
		t.Errorf("ParseExeSelector(%q) = %q, %v", pin, d, ok)
	}
	if back, err := svid.FromSelectors(append(slices.Clone(want), pin), deadline); err != nil || !back.Equal(c) {
		t.Fatalf("FromSelectors with a scoped exe pin = %+v, %v", back, err)
	}
	for name, bad := range map[string][]string{
		"v1 and v2 mixed":        append(slices.Clone(want), "scope:kb:write"),
		"another task's value":   append(slices.Clone(want), "task:T-43:scope:kb:write"),
		"no task selector":       want[1:],
		"v1 exe pin in v2 entry": append(slices.Clone(want), svid.ExeSelector(sum)),
	} {
		if _, err := svid.FromSelectors(bad, deadline); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestIncarnationSelector: one incarnation, either layout, is read and is
// not a claim; a malformed or repeated one is refused.
func TestIncarnationSelector(t *testing.T) {
	const inc = "0123456789abcdef0123456789abcdef"
	c := researcher()
	scoped := append(c.ScopedSelectors(), svid.ScopedIncarnationSelector(c.Task, inc))
	if got := scoped[len(scoped)-1]; got != "task:T-42:incarnation:"+inc {
		t.Fatalf("ScopedIncarnationSelector = %q", got)
	}
	for _, in := range [][]string{scoped, append(c.Selectors(), "incarnation:"+inc)} {
		if back, err := svid.FromSelectors(in, deadline); err != nil || !back.Equal(c) {
			t.Errorf("FromSelectors(%q) = %+v, %v", in, back, err)
		}
	}
	for name, in := range map[string][]string{
		"short":       append(c.Selectors(), "incarnation:0123"),
		"upper case":  append(c.Selectors(), "incarnation:0123456789ABCDEF0123456789ABCDEF"),
		"twice":       append(c.Selectors(), "incarnation:"+inc, "incarnation:"+inc),
		"other task":  append(c.ScopedSelectors(), svid.ScopedIncarnationSelector("T-1", inc)),
		"scoped task": append(c.ScopedSelectors(), "task:T-42:incarnation:task:x"),
	} {
		if _, err := svid.FromSelectors(in, deadline); err == nil {
			t.Errorf("%s: FromSelectors(%q) accepted", name, in)
		}
	}
	if got, ok := svid.ParseIncarnationSelector("task:T-42:incarnation:" + inc); !ok || got != inc {
		t.Errorf("ParseIncarnationSelector = %q, %v", got, ok)
	}
}
