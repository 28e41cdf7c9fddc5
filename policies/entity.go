package policies

import (
	"github.com/hashicorp/hcl/v2"
)

// entityMatcher is a compiled subject or resource block: every set field
// must hold.
type entityMatcher struct {
	what       string // "subject" or "resource"
	types, ids []glob
}

var entitySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "id"}}}

func (l *loader) entityBlock(b *hcl.Block) *entityMatcher {
	content, diags := b.Body.Content(entitySchema)
	l.diags = append(l.diags, diags...)
	m := &entityMatcher{what: b.Type}
	if a := content.Attributes["type"]; a != nil {
		m.types = l.globs(a, "")
	}
	if a := content.Attributes["id"]; a != nil {
		m.ids = l.globs(a, "")
	}
	if len(content.Attributes) == 0 && !diags.HasErrors() {
		l.errorf(b.DefRange, "Empty "+b.Type+" block", "A %s block needs type or id; omit the block to match every %s.", b.Type, b.Type)
	}
	return m
}

func (m *entityMatcher) mismatch(typ, id string, explain bool) string {
	if len(m.types) > 0 && !matchAny(m.types, typ) {
		return why(explain, "%s.type: %q matches none of %s", m.what, typ, rawList(m.types))
	}
	if len(m.ids) > 0 && !matchAny(m.ids, id) {
		return why(explain, "%s.id: %q matches none of %s", m.what, id, rawList(m.ids))
	}
	return ""
}

// subject is the subject the policy sees: the asserted one, or else the
// authenticated peer (agent_task with claims, workload without); "" for
// neither.
func (in *Input) subject() (typ, id string) {
	if in.Subject.Type != "" {
		return in.Subject.Type, in.Subject.ID
	}
	if in.Peer.ID.IsZero() {
		return "", ""
	}
	if in.Peer.Claims != nil {
		return SubjectAgentTask, in.Peer.ID.String()
	}
	return SubjectWorkload, in.Peer.ID.String()
}

// reservedSubject reports an asserted subject that takes the type of an
// authenticated peer.
func (in *Input) reservedSubject() bool {
	t := in.Subject.Type
	return t == SubjectAgentTask || t == SubjectWorkload
}
