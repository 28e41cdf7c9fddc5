package svid

import (
	"encoding/json"
	"math"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// JWT claim names.
const (
	// JWTClaim holds the claims object in a JWT-SVID.
	JWTClaim = "agentid"
	// ActClaim is the RFC 8693 actor claim rendering the delegation chain.
	ActClaim = "act"
)

// JWTClaims returns the claims to add to a JWT-SVID: "agentid" holding the
// claims object (the same keys as the canonical JSON) and, for a delegated
// task, "act" rendering the chain as RFC 8693 actor claims: the direct
// delegator outermost, each earlier delegator nested in the "act" of the one
// after it. Values are plain maps, slices, strings and numbers, ready for
// structpb.
func (c Claims) JWTClaims() map[string]any {
	out := map[string]any{JWTClaim: c.jwtObject()}
	if act := c.Act(); act != nil {
		out[ActClaim] = act
	}
	return out
}

// Act renders the chain as an RFC 8693 "act" claim, nil for a root task.
func (c Claims) Act() map[string]any {
	var act map[string]any
	for _, d := range c.Chain { // root first, so the last delegator ends outermost
		next := map[string]any{"sub": d}
		if act != nil {
			next[ActClaim] = act
		}
		act = next
	}
	return act
}

func (c Claims) jwtObject() map[string]any {
	return map[string]any{
		"v":         c.V,
		"agent":     c.Agent,
		"task":      c.Task,
		"model":     c.Model,
		"prompt":    c.Prompt,
		"scope":     toAnySlice(c.Scope),
		"principal": c.Principal,
		"chain":     toAnySlice(c.Chain),
		"deadline":  c.Deadline.UTC().Format(timeFormat),
	}
}

func toAnySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// FromJWTClaims reads the claims from a JWT's claims map (as decoded by
// go-spiffe or encoding/json), checks that "act" agrees with the chain, and
// validates them against the token's "sub" ([Claims.Validate]). A token
// without an "agentid" claim is not an agent task: found is false and err is
// nil. It does not verify the token's signature.
func FromJWTClaims(m map[string]any, opts ...Option) (c Claims, found bool, err error) {
	raw, found := m[JWTClaim]
	if !found {
		return Claims{}, false, nil
	}
	sub, _ := m["sub"].(string)
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return Claims{}, true, fail(ReasonNotTaskID, "JWT sub %q: %v", sub, err)
	}
	return fromJWT(id, raw, m[ActClaim], opts)
}

// FromJWTSVID is [FromJWTClaims] on a parsed (and signature-checked)
// JWT-SVID, validated against its SPIFFE ID.
func FromJWTSVID(s *jwtsvid.SVID, opts ...Option) (Claims, bool, error) {
	raw, found := s.Claims[JWTClaim]
	if !found {
		return Claims{}, false, nil
	}
	return fromJWT(s.ID, raw, s.Claims[ActClaim], opts)
}

func fromJWT(id spiffeid.ID, raw, act any, opts []Option) (Claims, bool, error) {
	c, err := decodeMap(raw)
	if err != nil {
		return Claims{}, true, err
	}
	if err := checkAct(c.Chain, act); err != nil {
		return Claims{}, true, err
	}
	return c, true, c.Validate(id, opts...)
}

// decodeMap reads the claims object from its generic JSON form.
func decodeMap(raw any) (Claims, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return Claims{}, fail(ReasonMalformed, "%q claim must be an object, found %T", JWTClaim, raw)
	}
	var c Claims
	for k, v := range m {
		if err := c.setFromAny(k, v); err != nil {
			return Claims{}, err
		}
	}
	if _, ok := m["v"]; !ok {
		return Claims{}, fail(ReasonUnsupportedVersion, `"v" missing`)
	}
	return c, c.Check()
}

func (c *Claims) setFromAny(k string, v any) error {
	var err error
	switch k {
	case "v":
		c.V, err = anyVersion(v)
	case "agent":
		c.Agent, err = anyString(k, v)
	case "task":
		c.Task, err = anyString(k, v)
	case "model":
		c.Model, err = anyString(k, v)
	case "prompt":
		c.Prompt, err = anyString(k, v)
	case "principal":
		c.Principal, err = anyString(k, v)
	case "scope":
		c.Scope, err = anyStrings(k, v, MaxScopes)
	case "chain":
		c.Chain, err = anyStrings(k, v, MaxChain)
	case "deadline":
		c.Deadline, err = anyTime(v)
	default:
		err = fail(ReasonMalformed, "unknown key %q", k)
	}
	return err
}

func anyVersion(v any) (int, error) {
	var f float64
	switch n := v.(type) {
	case float64: // encoding/json and SPIRE (structpb) give floats
		f = n
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, fail(ReasonMalformed, `"v" %q is not a number`, n)
		}
	default:
		return 0, fail(ReasonMalformed, `"v" must be a number, found %T`, v)
	}
	if f != math.Trunc(f) || f != Version {
		return 0, fail(ReasonUnsupportedVersion, `"v" is %v, this build reads %d`, f, Version)
	}
	return Version, nil
}

func anyString(k string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fail(ReasonMalformed, "%q must be a string, found %T", k, v)
	}
	return s, nil
}

func anyStrings(k string, v any, limit int) ([]string, error) {
	switch l := v.(type) {
	case []string:
		if len(l) > limit {
			return nil, fail(ReasonTooLarge, "%q has more than %d entries", k, limit)
		}
		return l, nil
	case []any:
		if len(l) > limit {
			return nil, fail(ReasonTooLarge, "%q has more than %d entries", k, limit)
		}
		if len(l) == 0 {
			return nil, nil
		}
		out := make([]string, len(l))
		for i, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, fail(ReasonMalformed, "%q entry must be a string, found %T", k, e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fail(ReasonMalformed, "%q must be an array of strings, found %T", k, v)
}

func anyTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, fail(ReasonMalformed, `"deadline" must be an RFC 3339 string, found %T`, v)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fail(ReasonInvalidField, "deadline %q is not an RFC 3339 time", s)
	}
	return t.UTC(), nil
}

// checkAct verifies that the "act" claim renders chain: the last delegator
// outermost. Both absent is fine; "act" on a root task or missing on a
// delegated one is a mismatch.
func checkAct(chain []string, act any) error {
	for i := len(chain) - 1; i >= 0; i-- {
		m, ok := act.(map[string]any)
		if !ok {
			return fail(ReasonActMismatch, "act claim missing or not an object at depth %d", len(chain)-1-i)
		}
		if sub, _ := m["sub"].(string); sub != chain[i] {
			return fail(ReasonActMismatch, "act sub %q, chain says %q", sub, chain[i])
		}
		act = m[ActClaim]
	}
	if act != nil {
		return fail(ReasonActMismatch, "act claim is deeper than the chain of %d", len(chain))
	}
	return nil
}
