package svid

import (
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Validate checks the claims against the SPIFFE ID of the SVID that carried
// them: every field as in [Claims.Check]; id is a task ID whose agent and
// task agree with the claims; id and every chain member are in the allowed
// trust domains ([WithTrustDomains], default id's own); the chain neither
// repeats an entry nor contains id; and the deadline has not passed
// ([WithTime], [WithClock]). The error is a *[ValidationError].
func (c Claims) Validate(id spiffeid.ID, opts ...Option) error {
	cfg := newConfig(opts)
	if err := c.Check(); err != nil {
		return err
	}
	agent, task, ok := ParseTaskID(id)
	if !ok {
		return fail(ReasonNotTaskID, "%s is not spiffe://<td>/agent/<agent>/task/<task>", id)
	}
	if agent != c.Agent || task != c.Task {
		return fail(ReasonIDMismatch, "claims name agent %q task %q but the SPIFFE ID is %s", c.Agent, c.Task, id)
	}
	allowed := cfg.trustDomains
	if len(allowed) == 0 {
		allowed = []spiffeid.TrustDomain{id.TrustDomain()}
	}
	if !slices.Contains(allowed, id.TrustDomain()) {
		return fail(ReasonForeignTrustDomain, "%s is not in an allowed trust domain", id)
	}
	if err := c.checkChain(id, allowed); err != nil {
		return err
	}
	if now := cfg.now(); !now.Before(c.Deadline) {
		return fail(ReasonExpired, "deadline %s passed at %s", c.Deadline.UTC().Format(timeFormat), now.UTC().Format(timeFormat))
	}
	return nil
}

func (c Claims) checkChain(self spiffeid.ID, allowed []spiffeid.TrustDomain) error {
	own := self.String()
	for i, s := range c.Chain {
		if s == own {
			return fail(ReasonChainCycle, "chain[%d] is the SVID's own ID %s", i, s)
		}
		if slices.Contains(c.Chain[:i], s) {
			return fail(ReasonChainCycle, "chain[%d] %s repeats an earlier entry", i, s)
		}
		id, _, err := parseTaskIDString(s)
		if err != nil {
			return fail(ReasonBadChainEntry, "chain[%d] %q: %v", i, s, err)
		}
		if !slices.Contains(allowed, id.TrustDomain()) {
			return fail(ReasonForeignTrustDomain, "chain[%d] %s is not in an allowed trust domain", i, s)
		}
	}
	return nil
}
