package svid_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func Example() {
	c := svid.Claims{
		V: svid.Version, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt:    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Scope:     []string{"kb:read"},
		Principal: "spiffe://example.org/user/alice",
		Chain:     []string{"spiffe://example.org/agent/planner/task/T-41"},
		Deadline:  time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
	}
	b, _ := c.MarshalJSON()
	fmt.Println(string(b))

	id := spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
	fmt.Println(c.Validate(id, svid.WithTime(time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC))))
	// Output:
	// {"v":1,"agent":"researcher","task":"T-42","model":"openai/gpt-4o","prompt":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","scope":["kb:read"],"principal":"spiffe://example.org/user/alice","chain":["spiffe://example.org/agent/planner/task/T-41"],"deadline":"2026-11-29T12:00:00Z"}
	// <nil>
}

func ExampleParse() {
	_, err := svid.Parse([]byte(`{"v":2}`))
	var ve *svid.ValidationError
	if errors.As(err, &ve) {
		fmt.Println(ve.Reason)
	}
	fmt.Println(err)
	// Output:
	// unsupported version
	// svid: claims rejected: unsupported version: "v" is 2, this build reads 1
}

func ExampleClaims_Validate() {
	c := researcher()
	id := spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/T-42")
	err := c.Validate(id, svid.WithTime(now))
	fmt.Println(errors.Is(err, &svid.ValidationError{Reason: svid.ReasonIDMismatch}))
	fmt.Println(err)
	// Output:
	// true
	// svid: claims rejected: SPIFFE ID mismatch: claims name agent "researcher" task "T-42" but the SPIFFE ID is spiffe://example.org/agent/planner/task/T-42
}

func ExampleClaims_Selectors() {
	for _, s := range researcher().Selectors() {
		fmt.Println(svid.DefaultSelectorType + ":" + s)
	}
	// Output:
	// agentid:task:T-42
	// agentid:agent:researcher
	// agentid:model:openai/gpt-4o
	// agentid:prompt:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
	// agentid:scope:kb:read
	// agentid:principal:spiffe://example.org/user/alice
	// agentid:delegator:0:spiffe://example.org/agent/planner/task/T-41
	// agentid:depth:1
}

func ExampleClaims_Act() {
	c := researcher()
	c.Chain = []string{"spiffe://example.org/agent/lead/task/T-1", "spiffe://example.org/agent/planner/task/T-41"}
	fmt.Println(c.Act())
	// Output:
	// map[act:map[sub:spiffe://example.org/agent/lead/task/T-1] sub:spiffe://example.org/agent/planner/task/T-41]
}

func ExampleClaims_Extension() {
	ext, _ := researcher().Extension(nil)
	fmt.Println(ext.Id, ext.Critical, len(ext.Value))
	// Output:
	// 1.3.6.1.4.1.32473.1.1 false 310
}
