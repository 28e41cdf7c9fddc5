package svid

import (
	"strconv"
	"strings"
	"time"
)

// DefaultSelectorType is the selector type of the agentid attestor: the
// plugin's name in SPIRE's agent.conf.
const DefaultSelectorType = "agentid"

// ScopedSelectors renders the claims as selector values (without the type)
// in the task-scoped layout (selectors v2): the task selector task:<id>,
// then every value of [Claims.Selectors] but the task's own prefixed with
// "task:<id>:" — task:<id>:agent:<name>, task:<id>:model:<id>, …,
// task:<id>:delegator:<i>:<spiffe-id>, task:<id>:depth:<n>. No value is
// shared by two tasks (task IDs have no ':'), so SPIRE's duplicate-entry
// check on create and its agents' test of which entries a running
// workload wants touch this task's entry only, however many live tasks
// share a model, prompt, scope, principal or delegator. The registrar
// writes this layout; the attestor emits it next to the v1 layout.
func (c Claims) ScopedSelectors() []string {
	v1 := c.Selectors()
	out := make([]string, 0, len(v1))
	out = append(out, "task:"+c.Task)
	prefix := "task:" + c.Task + ":"
	for _, v := range v1 {
		if !strings.HasPrefix(v, "task:") {
			out = append(out, prefix+v)
		}
	}
	return out
}

// ScopedExeSelector is the executable pin of task in the task-scoped
// layout: task:<task>:exe:sha256:<hex>.
func ScopedExeSelector(task, hexSHA256 string) string {
	return "task:" + task + ":" + ExeSelector(hexSHA256)
}

// scopedTask returns the task ID of task-scoped selector values (the v2
// layout: some value is task:<id>:<key>:…), false for the v1 layout.
func scopedTask(values []string) (string, bool) {
	for _, v := range values {
		rest, ok := strings.CutPrefix(v, "task:")
		if !ok {
			continue
		}
		if id, _, scoped := strings.Cut(rest, ":"); scoped {
			return id, true
		}
	}
	return "", false
}

// unscope turns task-scoped values back into v1 values: task:<id> stays,
// task:<id>:<v> becomes <v>. Any other value (v1 in a v2 set, another
// task's) is an error.
func unscope(values []string, task string) ([]string, error) {
	out := make([]string, 0, len(values))
	prefix := "task:" + task + ":"
	own := false
	for _, v := range values {
		switch {
		case v == "task:"+task:
			own = true
			out = append(out, v)
		case strings.HasPrefix(v, prefix):
			rest := v[len(prefix):]
			if strings.HasPrefix(rest, "task:") {
				return nil, fail(ReasonMalformed, "selector %q repeats the task", v)
			}
			out = append(out, rest)
		default:
			return nil, fail(ReasonMalformed, "selector %q is not scoped to task %s (task-scoped layout)", v, task)
		}
	}
	if !own {
		return nil, fail(ReasonMalformed, "task-scoped selectors of %s without task:%s", task, task)
	}
	return out, nil
}

// Selectors renders the claims as the values of the attestor's selectors
// (without the type) in the v1 layout, per the Selectors contract: task:, agent:, model:,
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
// v1 (exe:sha256:<hex>) or task-scoped (task:<id>:exe:sha256:<hex>), false
// when v is not one (a well-formed one: 64 lower-case hex digits).
func ParseExeSelector(v string) (string, bool) {
	if rest, ok := strings.CutPrefix(v, "task:"); ok {
		if _, after, ok := strings.Cut(rest, ":"); ok {
			v = after
		}
	}
	d, ok := strings.CutPrefix(v, ExeSelectorPrefix)
	return d, ok && ValidSHA256Hex(d)
}

// IncarnationSelectorPrefix starts the incarnation selector: the value
// "incarnation:<32 lower-case hex>" names one registration entry of a task
// — random, drawn by the registrar for every entry it creates. It is not a
// claim. The launcher writes it into the manifest from the task record and
// the attestor emits it, so a process launched for an incarnation that was
// revoked does not match the entry of its task ID created again (same
// claims, same other selectors). Entries carry it task-scoped:
// task:<id>:incarnation:<hex> ([ScopedIncarnationSelector]).
const IncarnationSelectorPrefix = "incarnation:"

// IncarnationLen is the length of an incarnation: 32 hex digits, 128 bits.
const IncarnationLen = 32

// ScopedIncarnationSelector is the incarnation selector value of task in
// the task-scoped layout: task:<task>:incarnation:<hex>.
func ScopedIncarnationSelector(task, incarnation string) string {
	return "task:" + task + ":" + IncarnationSelectorPrefix + incarnation
}

// ParseIncarnationSelector returns the incarnation of an incarnation
// selector value, v1 (incarnation:<hex>) or task-scoped
// (task:<id>:incarnation:<hex>), false when v is not a well-formed one.
func ParseIncarnationSelector(v string) (string, bool) {
	if rest, ok := strings.CutPrefix(v, "task:"); ok {
		if _, after, ok := strings.Cut(rest, ":"); ok {
			v = after
		}
	}
	inc, ok := strings.CutPrefix(v, IncarnationSelectorPrefix)
	return inc, ok && ValidIncarnation(inc)
}

// ValidIncarnation reports whether s is an incarnation: [IncarnationLen]
// lower-case hex digits.
func ValidIncarnation(s string) bool { return len(s) == IncarnationLen && lowerHex(s) }

// ValidSHA256Hex reports whether s is 64 lower-case hex digits.
func ValidSHA256Hex(s string) bool { return len(s) == 64 && lowerHex(s) }

func lowerHex(s string) bool {
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
// result must pass [Claims.Check]. One executable pin ([ExeSelector]) and
// one incarnation ([IncarnationSelectorPrefix]) are accepted and are not
// part of the claims.
//
// Both layouts are read: v1 ([Claims.Selectors]) and task-scoped
// ([Claims.ScopedSelectors], with a [ScopedExeSelector] pin); one set of
// values must be all of one layout.
func FromSelectors(values []string, deadline time.Time) (Claims, error) {
	if task, ok := scopedTask(values); ok {
		var err error
		if values, err = unscope(values, task); err != nil {
			return Claims{}, err
		}
	}
	c := Claims{V: Version, Deadline: deadline.UTC()}
	var chain map[int]string
	depth := -1
	var exe, inc string
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
		case "incarnation":
			if _, ok := ParseIncarnationSelector(v); !ok {
				err = fail(ReasonMalformed, "selector %q is not %s<%d lower-case hex>", v, IncarnationSelectorPrefix, IncarnationLen)
			} else {
				err = setOnce(&inc, key, val)
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
