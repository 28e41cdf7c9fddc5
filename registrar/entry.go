package registrar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// entry renders a task as a registration entry, in the task-scoped layout
// (svid.Claims.ScopedSelectors): every selector of the task type is the
// task's own, the executable pin included, so that SPIRE's duplicate check
// and its agents' matching touch no other entry. The hint is the SPIFFE ID
// of the root of the task's chain (its own for a root task): ListEntries
// by_hint finds a whole delegation tree, which is how Revoke finds
// descendants now that no selector is shared.
//
// Every entry gets a new random incarnation (newIncarnation), the selector
// task:<id>:incarnation:<hex>: the claims alone are the same for a task ID
// created again (by an operator, a parent delegating the same child again,
// a retried create after a revoke), and the process of a revoked
// incarnation, whose manifest still holds those claims, would match the new
// entry. Its manifest holds the old incarnation, so it does not.
func (r *Registrar) entry(id spiffeid.ID, parent spiffeid.ID, c svid.Claims, extra []*types.Selector, now time.Time) *types.Entry {
	left := c.Deadline.Sub(now)
	sels := make([]*types.Selector, 0, 9+len(c.Scope)+len(c.Chain)+len(extra))
	for _, v := range c.ScopedSelectors() {
		sels = append(sels, &types.Selector{Type: r.cfg.selectorType, Value: v})
	}
	sels = append(sels, &types.Selector{Type: r.cfg.selectorType, Value: svid.ScopedIncarnationSelector(c.Task, newIncarnation())})
	for _, s := range extra {
		if s.GetType() == r.cfg.selectorType {
			if d, ok := svid.ParseExeSelector(s.GetValue()); ok {
				s = &types.Selector{Type: s.GetType(), Value: svid.ScopedExeSelector(c.Task, d)}
			}
		}
		sels = append(sels, s)
	}
	return &types.Entry{
		SpiffeId:    spiffeIDProto(id),
		ParentId:    spiffeIDProto(parent),
		Selectors:   sels,
		Hint:        rootOf(id, c),
		ExpiresAt:   c.Deadline.Unix(),
		X509SvidTtl: ttlSeconds(min(r.cfg.maxX509TTL, left)),
		JwtSvidTtl:  ttlSeconds(min(r.cfg.maxJWTTTL, left)),
	}
}

// newIncarnation draws an incarnation: 128 random bits as 32 lower-case
// hex digits (crypto/rand, which does not fail).
func newIncarnation() string {
	var b [svid.IncarnationLen / 2]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

// isIncarnation reports whether s is an incarnation selector of the task
// type.
func (r *Registrar) isIncarnation(s *types.Selector) bool {
	if s.GetType() != r.cfg.selectorType {
		return false
	}
	_, ok := svid.ParseIncarnationSelector(s.GetValue())
	return ok
}

// rootOf is the SPIFFE ID of the root of task id's delegation tree.
func rootOf(id spiffeid.ID, c svid.Claims) string {
	if len(c.Chain) > 0 {
		return c.Chain[0]
	}
	return id.String()
}

func ttlSeconds(d time.Duration) int32 {
	return int32(max(d/time.Second, 1))
}

func spiffeIDProto(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

func idFromProto(p *types.SPIFFEID) (spiffeid.ID, error) {
	if p == nil {
		return spiffeid.ID{}, errors.New("no SPIFFE ID")
	}
	return spiffeid.FromString("spiffe://" + p.TrustDomain + p.Path)
}

// extraSelectors parses "type:value" selectors. The task selector type is
// refused, such a selector would add to or contradict the task record,
// except for one executable pin (svid.ExeSelector).
func (r *Registrar) extraSelectors(in []string) ([]*types.Selector, error) {
	out := make([]*types.Selector, 0, len(in))
	seen := make(map[string]bool, len(in))
	pins := 0
	for _, s := range in {
		typ, val, ok := strings.Cut(s, ":")
		switch {
		case !ok || typ == "" || val == "":
			return nil, refuse(ReasonInvalidRequest, "", "selector %q is not type:value", s)
		case typ == r.cfg.selectorType && strings.HasPrefix(val, "exe:"):
			if _, ok := svid.ParseExeSelector(val); !ok || pins > 0 {
				return nil, refuse(ReasonInvalidRequest, "", "selector %q: one executable pin %s%s<64 lower-case hex> at most", s, typ+":", svid.ExeSelectorPrefix)
			}
			pins++
		case typ == r.cfg.selectorType:
			return nil, refuse(ReasonInvalidRequest, "", "selector %q has the task selector type %q, which the registrar alone writes", s, typ)
		case seen[s]:
			return nil, refuse(ReasonInvalidRequest, "", "selector %q repeated", s)
		}
		seen[s] = true
		out = append(out, &types.Selector{Type: typ, Value: val})
	}
	return out, nil
}

// task decodes a registration entry as a task: its SPIFFE ID must be a
// task ID and its task selectors must rebuild claims that agree with it.
func (r *Registrar) task(e *types.Entry) (Task, error) {
	id, err := idFromProto(e.GetSpiffeId())
	if err != nil {
		return Task{}, fmt.Errorf("entry %s: %w", e.GetId(), err)
	}
	t := Task{ID: id, EntryID: e.GetId(), X509SVIDTTL: time.Duration(e.GetX509SvidTtl()) * time.Second,
		JWTSVIDTTL: time.Duration(e.GetJwtSvidTtl()) * time.Second}
	if p, err := idFromProto(e.GetParentId()); err == nil {
		t.ParentID = p.String()
	}
	if e.GetCreatedAt() != 0 {
		t.CreatedAt = time.Unix(e.GetCreatedAt(), 0).UTC()
	}
	var values []string
	for _, s := range e.GetSelectors() {
		if s.GetType() == r.cfg.selectorType {
			values = append(values, s.GetValue())
			if d, ok := svid.ParseExeSelector(s.GetValue()); ok {
				t.ExeSHA256 = d
			}
			if inc, ok := svid.ParseIncarnationSelector(s.GetValue()); ok {
				t.Incarnation = inc
			}
		} else {
			t.Selectors = append(t.Selectors, s.GetType()+":"+s.GetValue())
		}
	}
	agent, task, ok := svid.ParseTaskID(id)
	if !ok {
		return t, fmt.Errorf("entry %s: %s is not a task SPIFFE ID", e.GetId(), id)
	}
	if e.GetExpiresAt() == 0 {
		return t, fmt.Errorf("entry %s of %s has no expiry", e.GetId(), id)
	}
	c, err := svid.FromSelectors(values, time.Unix(e.GetExpiresAt(), 0))
	if err != nil {
		return t, fmt.Errorf("entry %s of %s: %w", e.GetId(), id, err)
	}
	if c.Agent != agent || c.Task != task {
		return t, fmt.Errorf("entry %s of %s: selectors name agent %q task %q", e.GetId(), id, c.Agent, c.Task)
	}
	t.Claims = c
	return t, nil
}

// list runs ListEntries page by page.
func (r *Registrar) list(ctx context.Context, f *entryv1.ListEntriesRequest_Filter) ([]*types.Entry, error) {
	return r.listReq(ctx, &entryv1.ListEntriesRequest{Filter: f})
}

// listReq pages through ListEntries with req (its page size set here).
func (r *Registrar) listReq(ctx context.Context, req *entryv1.ListEntriesRequest) ([]*types.Entry, error) {
	var out []*types.Entry
	req.PageSize = r.cfg.pageSize
	for {
		resp, err := r.client.ListEntries(ctx, req)
		if err != nil {
			return nil, wrapErr("list entries", err)
		}
		out = append(out, resp.GetEntries()...)
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func (r *Registrar) entriesOf(ctx context.Context, id spiffeid.ID) ([]*types.Entry, error) {
	return r.list(ctx, &entryv1.ListEntriesRequest_Filter{BySpiffeId: spiffeIDProto(id)})
}

func delegatorSelector(i int, id string) string {
	return "delegator:" + strconv.Itoa(i) + ":" + id
}

// RenderEntry returns the registration entry Create writes for a root task
// with claims c (deadline included) under node, at the registrar's clock:
// for bulk loading and benchmarks that fill SPIRE with tasks straight
// through the Entry API.
func (r *Registrar) RenderEntry(c svid.Claims, node spiffeid.ID) (*types.Entry, error) {
	id, err := svid.TaskID(r.td, c.Agent, c.Task)
	if err != nil {
		return nil, err
	}
	return r.entry(id, node, c, nil, r.cfg.now()), nil
}
