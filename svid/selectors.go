package svid

import (
	"strconv"
	"strings"
	"time"
)

// DefaultSelectorType is the selector type of the agentid attestor: the
// plugin's name in SPIRE's agent.conf.
const DefaultSelectorType = "agentid"

// Selectors renders the claims as the values of the attestor's selectors
// (without the type), per the Selectors contract: task:, agent:, model:,
// prompt:, one scope: per scope, principal:, one delegator:<i>: per chain
// entry (0 = root) and depth:. The deadline is not a selector: it travels as
// the registration entry's expiry.
func (c Claims) Selectors() []string {
	out := make([]string, 0, 6+len(c.Scope)+len(c.Chain))
	out = append(out, "task:"+c.Task, "agent:"+c.Agent, "model:"+c.Model, "prompt:"+c.Prompt)
	for _, s := range c.Scope {
		out = append(out, "scope:"+s)
	}
	out = append(out, "principal:"+c.Principal)
	for i, d := range c.Chain {
		out = append(out, "delegator:"+strconv.Itoa(i)+":"+d)
	}
	return append(out, "depth:"+strconv.Itoa(len(c.Chain)))
}

// ExeSelectorPrefix starts the executable pin: the selector value
// "exe:sha256:<64 lower-case hex>" is the SHA-256 of the executable the
// task's process runs. It is not a claim: a task entry carries it when the
// task request names an executable digest, and the attestor emits it from
// the real executable of every process it attests a manifest for, so that
// the entry matches only that binary.
const ExeSelectorPrefix = "exe:sha256:"

// ExeSelector is the executable pin selector value of a hex SHA-256.
func ExeSelector(hexSHA256 string) string { return ExeSelectorPrefix + hexSHA256 }

// ParseExeSelector returns the digest of an executable pin selector value,
// false when v is not one (a well-formed one: 64 lower-case hex digits).
func ParseExeSelector(v string) (string, bool) {
	d, ok := strings.CutPrefix(v, ExeSelectorPrefix)
	return d, ok && ValidSHA256Hex(d)
}

// ValidSHA256Hex reports whether s is 64 lower-case hex digits.
func ValidSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// FromSelectors rebuilds claims from selector values as written by
// [Claims.Selectors] (the order does not matter) and the task's deadline.
// It is strict: an unknown key, a repeated single-valued key, a gap in the
// delegator indices or a depth that disagrees with them is an error, and the
// result must pass [Claims.Check]. One executable pin ([ExeSelector]) is
// accepted and is not part of the claims.
func FromSelectors(values []string, deadline time.Time) (Claims, error) {
	c := Claims{V: Version, Deadline: deadline.UTC()}
	var chain map[int]string
	depth := -1
	var exe string
	for _, v := range values {
		key, val, _ := strings.Cut(v, ":")
		var err error
		switch key {
		case "task":
			err = setOnce(&c.Task, key, val)
		case "agent":
			err = setOnce(&c.Agent, key, val)
		case "model":
			err = setOnce(&c.Model, key, val)
		case "prompt":
			err = setOnce(&c.Prompt, key, val)
		case "principal":
			err = setOnce(&c.Principal, key, val)
		case "scope":
			c.Scope = append(c.Scope, val)
		case "delegator":
			chain, err = addDelegator(chain, val)
		case "depth":
			depth, err = parseDepth(depth, val)
		case "exe":
			if _, ok := ParseExeSelector(v); !ok {
				err = fail(ReasonMalformed, "selector %q is not %s<64 hex>", v, ExeSelectorPrefix)
			} else {
				err = setOnce(&exe, key, val)
			}
		default:
			err = fail(ReasonMalformed, "unknown selector %q", v)
		}
		if err != nil {
			return Claims{}, err
		}
	}
	if err := c.setChain(chain, depth); err != nil {
		return Claims{}, err
	}
	return c, c.Check()
}

func setOnce(dst *string, key, val string) error {
	if *dst != "" {
		return fail(ReasonMalformed, "selector %q repeated", key)
	}
	*dst = val
	return nil
}

func addDelegator(chain map[int]string, val string) (map[int]string, error) {
	idx, id, ok := strings.Cut(val, ":")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || i < 0 || i >= MaxChain {
		return nil, fail(ReasonMalformed, "selector %q is not delegator:<0..%d>:<spiffe-id>", "delegator:"+val, MaxChain-1)
	}
	if chain == nil {
		chain = make(map[int]string)
	}
	if _, dup := chain[i]; dup {
		return nil, fail(ReasonMalformed, "selector delegator:%d repeated", i)
	}
	chain[i] = id
	return chain, nil
}

func parseDepth(prev int, val string) (int, error) {
	n, err := strconv.Atoi(val)
	if prev >= 0 || err != nil || n < 0 || n > MaxChain {
		return 0, fail(ReasonMalformed, "selector depth:%s is repeated or not 0..%d", val, MaxChain)
	}
	return n, nil
}

func (c *Claims) setChain(chain map[int]string, depth int) error {
	if depth < 0 {
		return fail(ReasonMalformed, "selector depth missing")
	}
	if len(chain) != depth {
		return fail(ReasonMalformed, "depth:%d but %d delegator selectors", depth, len(chain))
	}
	for i := range depth {
		id, ok := chain[i]
		if !ok {
			return fail(ReasonMalformed, "delegator:%d missing for depth %d", i, depth)
		}
		c.Chain = append(c.Chain, id)
	}
	return nil
}
