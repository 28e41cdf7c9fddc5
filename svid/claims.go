package svid

import (
	"slices"
	"time"
)

// Version is the major version of the claims this package reads and writes.
const Version = 1

// Limits of the contract. Inputs beyond them are rejected with ReasonTooLarge
// or ReasonInvalidField.
const (
	MaxJSONSize     = 8 << 10 // bytes of canonical JSON
	MaxScopes       = 64
	MaxChain        = 16
	MaxNameLen      = 128  // agent and task names
	MaxModelLen     = 256  // model identifier
	MaxScopeLen     = 128  // one scope token
	MaxPrincipalLen = 2048 // principal URI
)

// Claims is the task record carried by an agent task's SVIDs.
//
// The zero value is not valid. Values returned by the decoders of this
// package have passed field validation; Claims built by hand can be checked
// with [Claims.Check]. Slices are owned by the Claims: callers that keep a
// Claims must not modify them afterwards.
type Claims struct {
	// V is the major version, always [Version] for claims this package writes.
	V int
	// Agent is the agent name, the <agent> segment of the SPIFFE ID path.
	Agent string
	// Task is the task ID, the <task> segment of the SPIFFE ID path.
	Task string
	// Model identifies the model the agent runs, e.g. "openai/gpt-4o".
	Model string
	// Prompt is the digest of the system prompt, "sha256:<64 hex>".
	Prompt string
	// Scope lists the granted scope tokens (OAuth scope-token charset).
	Scope []string
	// Principal is the URI of the user or service on whose behalf the
	// chain runs.
	Principal string
	// Chain lists the SPIFFE IDs of the delegating tasks, root first; the
	// last element is the direct delegator. Empty for a root task.
	Chain []string
	// Deadline is when the task ends; SVIDs carrying the claims are invalid
	// after it.
	Deadline time.Time
}

// Depth is the number of delegators: 0 for a root task.
func (c Claims) Depth() int { return len(c.Chain) }

// HasScope reports whether the claims grant the scope token s.
func (c Claims) HasScope(s string) bool { return slices.Contains(c.Scope, s) }

// Delegator returns the direct delegator's SPIFFE ID, or "" for a root task.
func (c Claims) Delegator() string {
	if len(c.Chain) == 0 {
		return ""
	}
	return c.Chain[len(c.Chain)-1]
}

// Equal reports whether two claims hold the same record.
func (c Claims) Equal(o Claims) bool {
	return c.V == o.V && c.Agent == o.Agent && c.Task == o.Task &&
		c.Model == o.Model && c.Prompt == o.Prompt &&
		slices.Equal(c.Scope, o.Scope) && c.Principal == o.Principal &&
		slices.Equal(c.Chain, o.Chain) && c.Deadline.Equal(o.Deadline)
}

// Clone returns a deep copy.
func (c Claims) Clone() Claims {
	c.Scope = slices.Clone(c.Scope)
	c.Chain = slices.Clone(c.Chain)
	return c
}
