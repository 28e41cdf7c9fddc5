package registrar

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var errNoPolicy = errors.New("registrar: no issuance policy configured")

// Create creates a root task: it checks the request against the issuance
// policy and writes the task's registration entry. A task whose SPIFFE ID
// already has an entry is refused with ReasonConflict; Create never leaves
// a second entry for one task, even when two registrars race.
func (r *Registrar) Create(ctx context.Context, req Request) (Task, error) {
	p, now := r.currentPolicy(), r.cfg.now()
	if p == nil {
		return Task{}, errNoPolicy
	}
	c, node, extra, err := r.rootClaims(p, req, now)
	if err != nil {
		return Task{}, err
	}
	if req.BeforeWrite != nil {
		if err := req.BeforeWrite(); err != nil {
			return Task{}, err
		}
	}
	return r.put(ctx, c, node, extra, now, !req.Deadline.IsZero())
}

// rootClaims checks a root task request against the policy and returns
// its claims, node and extra selectors.
func (r *Registrar) rootClaims(p *Policy, req Request, now time.Time) (svid.Claims, spiffeid.ID, []*types.Selector, error) {
	c, extra, err := r.claims(req)
	if err != nil {
		return c, spiffeid.ID{}, nil, err
	}
	rule, ok := p.Rule(c.Agent)
	if !ok {
		return c, spiffeid.ID{}, nil, refuse(ReasonUnknownAgent, "", "no policy block for agent %q", c.Agent)
	}
	if c.Deadline, err = deadline(req, now, now.Add(rule.MaxTTL)); err != nil {
		return c, spiffeid.ID{}, nil, err
	}
	if err := c.Check(); err != nil {
		return c, spiffeid.ID{}, nil, &Error{Reason: ReasonInvalidRequest, Err: err}
	}
	if err := r.admit(rule, c, now); err != nil {
		return c, spiffeid.ID{}, nil, err
	}
	if req.ParentID == "" {
		return c, spiffeid.ID{}, nil, refuse(ReasonInvalidRequest, "", "parent ID (the SPIRE agent's SPIFFE ID) required")
	}
	node, err := spiffeid.FromString(req.ParentID)
	if err != nil {
		return c, spiffeid.ID{}, nil, &Error{Reason: ReasonInvalidRequest, Detail: "parent ID " + req.ParentID, Err: err}
	}
	return c, node, extra, nil
}

func (r *Registrar) currentPolicy() *Policy {
	if r.policy == nil {
		return nil
	}
	return r.policy.Policy()
}

// claims builds the request's claims without chain and deadline.
func (r *Registrar) claims(req Request) (svid.Claims, []*types.Selector, error) {
	c := svid.Claims{V: svid.Version, Agent: req.Agent, Task: req.Task, Model: req.Model,
		Prompt: req.Prompt, Scope: slices.Clone(req.Scope), Principal: req.Principal}
	if c.Task == "" {
		id, err := NewTaskID(r.cfg.rand)
		if err != nil {
			return c, nil, err
		}
		c.Task = id
	}
	if !svid.ValidName(c.Agent) {
		return c, nil, refuse(ReasonInvalidRequest, "", "agent %q is not [A-Za-z0-9._-]{1,128}", c.Agent)
	}
	extra, err := r.extraSelectors(req.Selectors)
	if err != nil {
		return c, nil, err
	}
	extra, err = r.withExePin(extra, req.ExeSHA256)
	return c, extra, err
}

// withExePin adds the executable pin exe to the extra selectors, unless
// they hold it already; two different pins are refused.
func (r *Registrar) withExePin(extra []*types.Selector, exe string) ([]*types.Selector, error) {
	if exe == "" {
		return extra, nil
	}
	if !svid.ValidSHA256Hex(exe) {
		return nil, refuse(ReasonInvalidRequest, "", "executable digest %q is not 64 lower-case hex digits", exe)
	}
	pin := svid.ExeSelector(exe)
	for _, s := range extra {
		if s.GetType() == r.cfg.selectorType {
			if s.GetValue() != pin {
				return nil, refuse(ReasonInvalidRequest, "", "two executable pins: %s and %s", s.GetValue(), pin)
			}
			return extra, nil
		}
	}
	return append(extra, &types.Selector{Type: r.cfg.selectorType, Value: pin}), nil
}

// deadline resolves the request's deadline (def when it gives none),
// truncated to whole seconds as the entry's expiry is.
func deadline(req Request, now, def time.Time) (time.Time, error) {
	d := def
	switch {
	case req.TTL != 0 && !req.Deadline.IsZero():
		return time.Time{}, refuse(ReasonInvalidRequest, "", "give a deadline or a TTL, not both")
	case req.TTL < 0:
		return time.Time{}, refuse(ReasonInvalidRequest, "", "TTL %s is negative", req.TTL)
	case req.TTL > 0:
		d = now.Add(req.TTL)
	case !req.Deadline.IsZero():
		d = req.Deadline
	}
	return time.Unix(d.Unix(), 0).UTC(), nil
}

// admit checks checked claims against the minimum TTL and the agent's
// rule.
func (r *Registrar) admit(rule AgentRule, c svid.Claims, now time.Time) error {
	if left := c.Deadline.Sub(now); left < r.cfg.minTTL {
		return refuse(ReasonTTLTooShort, "", "deadline %s is %s away, less than the minimum %s",
			c.Deadline.Format(time.RFC3339), left, r.cfg.minTTL)
	}
	return rule.admit(c, now)
}

func (rule AgentRule) admit(c svid.Claims, now time.Time) error {
	if _, ok := matchAny(rule.Models, c.Model); !ok {
		return refuse(ReasonModelNotAllowed, rule.Pos, "model %q matches none of %q", c.Model, rule.Models)
	}
	if _, ok := matchAny(rule.Prompts, c.Prompt); !ok {
		return refuse(ReasonPromptNotAllowed, rule.Pos, "prompt %s matches none of the allowed prompts", c.Prompt)
	}
	for _, s := range c.Scope {
		if _, ok := matchAny(rule.Scopes, s); !ok {
			return refuse(ReasonScopeNotAllowed, rule.Pos, "scope %q matches none of %q", s, rule.Scopes)
		}
	}
	if _, ok := matchAny(rule.Principals, c.Principal); !ok {
		return refuse(ReasonPrincipalNotAllowed, rule.Pos, "principal %q matches none of %q", c.Principal, rule.Principals)
	}
	if ttl := c.Deadline.Sub(now); ttl > rule.MaxTTL {
		return refuse(ReasonTTLExceeded, rule.Pos, "deadline %s is %s away, more than max_ttl %s",
			c.Deadline.Format(time.RFC3339), ttl, rule.MaxTTL)
	}
	return nil
}

// RetryWindow bounds how late a retried create or delegation that gave
// a TTL (or no deadline: the agent's max_ttl) is recognised as the same
// request: its deadline, now + TTL, moves on with the clock, so the
// existing entry's deadline must lie within this window before it. A
// request that named its deadline matches whenever it is retried.
const RetryWindow = 10 * time.Minute

// put writes the task's entry unless the task exists. A task that exists
// with the entry this request would write (same node, same selectors, and
// the same deadline — for a relative one (exact false), a deadline at most
// RetryWindow earlier) is the same request retried: its task is returned,
// so that a create is idempotent for a caller that retries with the task
// ID. Any other existing entry is a conflict.
func (r *Registrar) put(ctx context.Context, c svid.Claims, node spiffeid.ID, extra []*types.Selector, now time.Time, exact bool) (Task, error) {
	w, err := r.want(ctx, c, node, extra, now, exact)
	if err != nil || w.done {
		return w.task, err
	}
	resp, err := r.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{
		Entries: []*types.Entry{w.entry},
	})
	if err != nil {
		return Task{}, wrapErr("create entry", err)
	}
	if len(resp.GetResults()) != 1 {
		return Task{}, wrapErr("create entry", errors.New("SPIRE answered with no result"))
	}
	return r.created(ctx, w, resp.GetResults()[0])
}

// pending is an entry to write, or (done) a request answered already.
type pending struct {
	id    spiffeid.ID
	entry *types.Entry
	exact bool
	done  bool
	task  Task
}

// want renders the entry of a task and looks the task up: a task that
// exists is answered here (done: the same request retried, or a conflict).
func (r *Registrar) want(ctx context.Context, c svid.Claims, node spiffeid.ID, extra []*types.Selector, now time.Time, exact bool) (pending, error) {
	id, err := svid.TaskID(r.td, c.Agent, c.Task)
	if err != nil {
		return pending{}, &Error{Reason: ReasonInvalidRequest, Err: err}
	}
	w := pending{id: id, entry: r.entry(id, node, c, extra, now), exact: exact}
	existing, err := r.entriesOf(ctx, id)
	if err != nil {
		return pending{}, err
	}
	if len(existing) > 0 {
		w.done = true
		w.task, err = r.retried(existing, w.entry, exact)
		return w, err
	}
	return w, nil
}

// created finishes the create of w from SPIRE's result.
func (r *Registrar) created(ctx context.Context, w pending, res *entryv1.BatchCreateEntryResponse_Result) (Task, error) {
	switch code := codes.Code(res.GetStatus().GetCode()); code {
	case codes.OK:
	case codes.AlreadyExists:
		// An entry with the same SPIFFE ID, node and selectors was
		// created meanwhile: the same task if its deadline agrees.
		// (Every entry has its own incarnation, so only entries that
		// are not the registrar's collide; races between registrars
		// are settled below.)
		existing, err := r.entriesOf(ctx, w.id)
		if err != nil {
			return Task{}, err
		}
		if len(existing) == 0 {
			return Task{}, conflict(w.id, res.GetEntry().GetId())
		}
		return r.retried(existing, w.entry, w.exact)
	default:
		return Task{}, wrapErr("create entry", status.Error(code, res.GetStatus().GetMessage()))
	}
	if won, err := r.settle(ctx, w, res.GetEntry().GetId()); err != nil || won != nil {
		if err != nil {
			return Task{}, err
		}
		return *won, nil
	}
	return r.task(res.GetEntry())
}

// BatchResult is the outcome of one request of CreateBatch: its task, or
// why not.
type BatchResult struct {
	Task Task
	Err  error
}

// maxBatch bounds the entries of one BatchCreateEntry call of CreateBatch.
const maxBatch = 500

// CreateBatch creates root tasks as Create does, for orchestrators that
// start many at once: every request is checked on its own, the tasks that
// pass are written with one BatchCreateEntry per 500, and the results are
// in the order of reqs. A refused request, a task ID given twice (the
// second is a conflict) or an existing task fails its own request only; a
// task that exists with the same request is returned as Create would.
func (r *Registrar) CreateBatch(ctx context.Context, reqs []Request) []BatchResult {
	out := make([]BatchResult, len(reqs))
	p, now := r.currentPolicy(), r.cfg.now()
	if p == nil {
		for i := range out {
			out[i].Err = errNoPolicy
		}
		return out
	}
	ws := make([]pending, len(reqs))
	seen := make(map[spiffeid.ID]bool, len(reqs))
	var todo []int
	for i, req := range reqs {
		c, node, extra, err := r.rootClaims(p, req, now)
		if err == nil {
			ws[i], err = r.want(ctx, c, node, extra, now, !req.Deadline.IsZero())
		}
		switch {
		case err != nil:
			out[i].Err = err
		case seen[ws[i].id]:
			out[i].Err = refuse(ReasonConflict, "", "task %s is requested twice in the batch", ws[i].id)
		case ws[i].done:
			out[i].Task = ws[i].task
		default:
			todo = append(todo, i)
		}
		if err == nil {
			seen[ws[i].id] = true
		}
	}
	for len(todo) > 0 {
		chunk := todo[:min(len(todo), maxBatch)]
		todo = todo[len(chunk):]
		entries := make([]*types.Entry, len(chunk))
		for k, i := range chunk {
			entries[k] = ws[i].entry
		}
		resp, err := r.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
		if err == nil && len(resp.GetResults()) != len(chunk) {
			err = fmt.Errorf("SPIRE answered %d results for %d entries", len(resp.GetResults()), len(chunk))
		}
		for k, i := range chunk {
			if err != nil {
				out[i].Err = wrapErr("create entry", err)
				continue
			}
			out[i].Task, out[i].Err = r.created(ctx, ws[i], resp.GetResults()[k])
		}
	}
	return out
}

// retried returns the task of the one existing entry when it is the entry
// want (see put), and a conflict otherwise.
func (r *Registrar) retried(existing []*types.Entry, want *types.Entry, exact bool) (Task, error) {
	id, _ := idFromProto(want.GetSpiffeId())
	if len(existing) != 1 || !r.sameEntry(existing[0], want, exact) {
		return Task{}, conflict(id, existing[0].GetId())
	}
	t, err := r.task(existing[0])
	if err != nil {
		return Task{}, conflict(id, existing[0].GetId())
	}
	return t, nil
}

// sameEntry reports whether entry e is the entry want of a retried request:
// the same but for its incarnation, which every rendering draws anew.
func (r *Registrar) sameEntry(e, want *types.Entry, exact bool) bool {
	if idString(e.GetParentId()) != idString(want.GetParentId()) {
		return false
	}
	a, b := selectorStrings(slices.DeleteFunc(slices.Clone(e.GetSelectors()), r.isIncarnation)),
		selectorStrings(slices.DeleteFunc(slices.Clone(want.GetSelectors()), r.isIncarnation))
	if !slices.Equal(a, b) {
		return false
	}
	have, w := e.GetExpiresAt(), want.GetExpiresAt()
	if exact {
		return have == w
	}
	return have <= w && have >= w-int64(RetryWindow/time.Second)
}

// selectorStrings returns the selectors as sorted "type:value" strings.
func selectorStrings(sels []*types.Selector) []string {
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.GetType() + ":" + s.GetValue()
	}
	slices.Sort(out)
	return out
}

func idString(p *types.SPIFFEID) string {
	if p == nil {
		return ""
	}
	return "spiffe://" + p.GetTrustDomain() + p.GetPath()
}

func conflict(id spiffeid.ID, entryID string) error {
	return refuse(ReasonConflict, "", "task %s exists (entry %s)", id, entryID)
}

// settle resolves a race between registrars that created entries for the
// same task at once (every entry has its own incarnation, so SPIRE accepts
// both): the oldest entry, by (created_at, id), stays; the others are
// deleted by their creators. A creator whose entry lost answers with the
// winner's task when the winner is the entry it wanted (the same request,
// retried or sent to two registrars), and with a conflict otherwise.
func (r *Registrar) settle(ctx context.Context, w pending, mine string) (*Task, error) {
	all, err := r.entriesOf(ctx, w.id)
	if err != nil || len(all) < 2 {
		return nil, err
	}
	first := slices.MinFunc(all, func(a, b *types.Entry) int {
		return cmp.Or(cmp.Compare(a.GetCreatedAt(), b.GetCreatedAt()), cmp.Compare(a.GetId(), b.GetId()))
	})
	if first.GetId() == mine {
		return nil, nil
	}
	if _, err := r.delete(ctx, []string{mine}); err != nil {
		return nil, err
	}
	if r.sameEntry(first, w.entry, w.exact) {
		if t, err := r.task(first); err == nil {
			return &t, nil
		}
	}
	return nil, conflict(w.id, first.GetId())
}
