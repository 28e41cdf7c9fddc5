package policies

import (
	"strconv"

	"github.com/agentid/agentid/internal/strictjson"
)

// Maximum lengths, in bytes, of the request data that a Set matches
// patterns against. [Set.Decide] refuses a longer action before matching
// anything (see [Action.CheckLimits]); front-ends should check first and
// answer in their protocol's terms: HTTP 414 for a path, 400 for the rest,
// an ext_authz denial with the error as its reason, a JSON-RPC error for an
// MCP tool call.
const (
	// MaxPathLen bounds Action.Path of an HTTP action (the request path).
	MaxPathLen = 8 << 10
	// MaxMethodLen bounds Action.Path of a gRPC action (the full method
	// "/package.Service/Method").
	MaxMethodLen = 256
	// MaxNameLen bounds Action.Name (an MCP tool name or a generic action
	// name), Action.Kind and Action.Method.
	MaxNameLen = 256
	// MaxArgumentsLen bounds Action.Arguments (an MCP tool call's
	// arguments, which arrive in a body of at most 1 MiB).
	MaxArgumentsLen = 1 << 20
	// MaxNumberLen bounds a number the client sends: a number in
	// Action.Arguments, the AuthZEN properties and context, or a request
	// string that a condition converts to a number. Parsing a number costs
	// time quadratic in its digits; a float64 has at most 17 significant
	// digits and an integer of more than 309 digits overflows it, so no
	// number that JavaScript or Go servers read exactly is refused.
	MaxNumberLen = strictjson.MaxNumberLen
)

// LimitError is the error of [Action.CheckLimits]: one field of the action
// is longer than its maximum.
type LimitError struct {
	Field string // "action.path", "action.name", "action.kind", "action.method" or "action.arguments"
	Len   int    // its length in bytes
	Max   int    // its maximum
}

func (e *LimitError) Error() string {
	return ReasonInputTooLong + ": " + e.Field + " is " + strconv.Itoa(e.Len) + " bytes, more than " + strconv.Itoa(e.Max)
}

// ReasonInputTooLong starts the reason of a decision refused because of
// an over-long input, and the text of every [LimitError].
const ReasonInputTooLong = "input too long"

// CheckLimits returns a [*LimitError] when a field of a is longer than
// the engine accepts: Path beyond [MaxPathLen] (HTTP and any kind but gRPC)
// or [MaxMethodLen] (gRPC), Name, Kind or Method beyond [MaxNameLen]. It
// costs a few comparisons.
func (a Action) CheckLimits() error {
	maxPath := MaxPathLen
	if a.Kind == KindGRPC {
		maxPath = MaxMethodLen
	}
	switch {
	case len(a.Path) > maxPath:
		return &LimitError{Field: "action.path", Len: len(a.Path), Max: maxPath}
	case len(a.Name) > MaxNameLen:
		return &LimitError{Field: "action.name", Len: len(a.Name), Max: MaxNameLen}
	case len(a.Kind) > MaxNameLen:
		return &LimitError{Field: "action.kind", Len: len(a.Kind), Max: MaxNameLen}
	case len(a.Method) > MaxNameLen:
		return &LimitError{Field: "action.method", Len: len(a.Method), Max: MaxNameLen}
	case len(a.Arguments) > MaxArgumentsLen:
		return &LimitError{Field: "action.arguments", Len: len(a.Arguments), Max: MaxArgumentsLen}
	}
	return nil
}
