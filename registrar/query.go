package registrar

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Get returns the task with SPIFFE ID id, read from its entry.
func (r *Registrar) Get(ctx context.Context, id spiffeid.ID) (Task, error) {
	if !svid.IsTaskID(id) {
		return Task{}, refuse(ReasonInvalidRequest, "", "%s is not a task SPIFFE ID", id)
	}
	entries, err := r.entriesOf(ctx, id)
	if err != nil {
		return Task{}, err
	}
	switch len(entries) {
	case 0:
		return Task{}, refuse(ReasonNotFound, "", "no entry for %s", id)
	case 1:
		t, err := r.task(entries[0])
		if err != nil {
			return Task{}, wrapErr("get", err)
		}
		return t, nil
	}
	return Task{}, wrapErr("get", fmt.Errorf("%d entries for %s", len(entries), id))
}

// TaskID returns the SPIFFE ID of a task of the registrar's trust domain.
func (r *Registrar) TaskID(agent, task string) (spiffeid.ID, error) {
	id, err := svid.TaskID(r.td, agent, task)
	if err != nil {
		return id, &Error{Reason: ReasonInvalidRequest, Err: err}
	}
	return id, nil
}

// Filter selects tasks in List; empty fields match any task.
type Filter struct {
	Agent     string
	Principal string
	Model     string
	// ParentTask is the SPIFFE ID of the direct delegator.
	ParentTask string
	// ParentID is the SPIRE agent (node) the entries hang under.
	ParentID string
}

// Listing is what List and ListPage return.
type Listing struct {
	// Tasks are the tasks that match, ordered by SPIFFE ID (within the
	// page, for ListPage).
	Tasks []Task
	// Invalid are the task-shaped entries (a task SPIFFE ID of the trust
	// domain with selectors of the task type) that matched but do not
	// decode as a task: reported apart so that one broken entry neither
	// fails the listing nor hides the others.
	Invalid []InvalidEntry
	// NextPageToken continues a ListPage; empty on the last page (always
	// empty from List).
	NextPageToken string
}

// InvalidEntry is a task-shaped entry that does not decode.
type InvalidEntry struct {
	ID      spiffeid.ID
	EntryID string
	Err     error
}

// List returns the tasks that match every field of f, ordered by SPIFFE
// ID, reading every page. Entries of other workloads are skipped; task
// entries that do not decode are returned in Listing.Invalid.
func (r *Registrar) List(ctx context.Context, f Filter) (Listing, error) {
	var all Listing
	token := ""
	for {
		page, err := r.ListPage(ctx, f, r.cfg.pageSize, token)
		if err != nil {
			return Listing{}, err
		}
		all.Tasks = append(all.Tasks, page.Tasks...)
		all.Invalid = append(all.Invalid, page.Invalid...)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	sortTasks(all.Tasks)
	return all, nil
}

// ListPage returns one page of List: tasks past their deadline whose
// entries SPIRE has not pruned yet are left out. At most pageSize entries of SPIRE
// (0: SPIRE's own limit, all of them) from the page token (empty: the
// first page). The tasks and invalid entries of a page may be fewer than
// pageSize: entries of other workloads are skipped. Pages follow SPIRE's
// order; tasks are sorted by SPIFFE ID within a page.
func (r *Registrar) ListPage(ctx context.Context, f Filter, pageSize int32, token string) (Listing, error) {
	filter, keep, err := r.listFilter(ctx, f)
	if err != nil {
		return Listing{}, err
	}
	resp, err := r.client.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: filter, PageSize: pageSize, PageToken: token})
	if err != nil {
		return Listing{}, wrapErr("list entries", err)
	}
	out := Listing{NextPageToken: resp.GetNextPageToken(), Tasks: make([]Task, 0, len(resp.GetEntries()))}
	now := r.cfg.now()
	for _, e := range resp.GetEntries() {
		if !r.isTaskEntry(e) {
			continue
		}
		if exp := e.GetExpiresAt(); exp > 0 && !now.Before(time.Unix(exp, 0)) {
			continue // past the deadline: SPIRE prunes the entry on its own schedule
		}
		t, err := r.task(e)
		switch {
		case err != nil:
			if keep == nil {
				out.Invalid = append(out.Invalid, InvalidEntry{ID: t.ID, EntryID: e.GetId(), Err: err})
			}
		case keep == nil || keep(t):
			out.Tasks = append(out.Tasks, t)
		}
	}
	sortTasks(out.Tasks)
	return out, nil
}

func sortTasks(tasks []Task) {
	slices.SortFunc(tasks, func(a, b Task) int {
		return cmp.Or(cmp.Compare(a.ID.String(), b.ID.String()), cmp.Compare(a.EntryID, b.EntryID))
	})
}

// listFilter returns the SPIRE filter of f (the node, by parent ID) and
// the test of the other fields on decoded tasks (nil: every task). The task
// fields are tested here, not by SPIRE: in the task-scoped layout no
// selector is shared by two tasks, so no selector filter can find all the
// tasks of a model or a principal. Entries that do not decode are not
// reported by a filtered listing: they cannot be tested.
func (r *Registrar) listFilter(ctx context.Context, f Filter) (*entryv1.ListEntriesRequest_Filter, func(Task) bool, error) {
	filter := &entryv1.ListEntriesRequest_Filter{}
	if f.ParentID != "" {
		node, err := spiffeid.FromString(f.ParentID)
		if err != nil {
			return nil, nil, &Error{Reason: ReasonInvalidRequest, Detail: "parent ID " + f.ParentID, Err: err}
		}
		filter.ByParentId = spiffeIDProto(node)
	}
	if f.Agent == "" && f.Principal == "" && f.Model == "" && f.ParentTask == "" {
		return filter, nil, nil
	}
	parent := ""
	if f.ParentTask != "" {
		p, err := r.parentByString(ctx, f.ParentTask)
		if err != nil {
			return nil, nil, err
		}
		parent = p.ID.String()
	}
	keep := func(t Task) bool {
		c := t.Claims
		return (f.Agent == "" || c.Agent == f.Agent) && (f.Principal == "" || c.Principal == f.Principal) &&
			(f.Model == "" || c.Model == f.Model) && (parent == "" || len(c.Chain) > 0 && c.Chain[len(c.Chain)-1] == parent)
	}
	return filter, keep, nil
}

func (r *Registrar) parentByString(ctx context.Context, s string) (Task, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return Task{}, &Error{Reason: ReasonInvalidRequest, Detail: "parent task " + s, Err: err}
	}
	t, err := r.Get(ctx, id)
	if ReasonOf(err) == ReasonNotFound {
		return Task{}, refuse(ReasonParentNotFound, "", "no entry for %s", id)
	}
	return t, err
}

// isTaskEntry reports whether an entry is a task of the registrar's trust
// domain: a task SPIFFE ID with task selectors.
func (r *Registrar) isTaskEntry(e *types.Entry) bool {
	id, err := idFromProto(e.GetSpiffeId())
	if err != nil || id.TrustDomain() != r.td || !svid.IsTaskID(id) {
		return false
	}
	return slices.ContainsFunc(e.GetSelectors(), func(s *types.Selector) bool { return s.GetType() == r.cfg.selectorType })
}

// maxRevokeRounds bounds Revoke's rounds of list and delete. A descendant
// can only be created while its parent's entry exists, and one created
// after its ancestor is gone removes itself (CreateChild re-checks its
// chain), so rounds beyond the first find only delegations that were in
// flight; a revoke still finding descendants after this many fails.
const maxRevokeRounds = 16

// Revoke deletes the task's entry and the entries of all its descendants,
// and returns what it removed: the task first, then its descendants by
// depth and SPIFFE ID. A descendant's chain holds the revoked task at the
// index of the task's own depth, and its entry's hint names the root of
// that chain, so one ListEntries by the hint finds children,
// grandchildren and further descendants alike (see descendants).
// Delegations may be in flight while the revoke runs:
// Revoke lists and deletes again until a list finds nothing, at most
// maxRevokeRounds times. Descendants whose entries do not decode are
// removed all the same and reported with zero Claims.
//
// A task without an entry (unknown, or revoked already) is ReasonNotFound;
// descendants left behind by a revoke that did not finish (or by the
// task's entry deleted directly in SPIRE) are removed all the same, and
// reported with the error.
func (r *Registrar) Revoke(ctx context.Context, id spiffeid.ID) ([]Task, error) {
	if !svid.IsTaskID(id) {
		return nil, refuse(ReasonInvalidRequest, "", "%s is not a task SPIFFE ID", id)
	}
	own, err := r.entriesOf(ctx, id)
	if err != nil {
		return nil, err
	}
	victims := r.lenientTasks(own)
	var removed []Task
	for round := 0; ; round++ {
		descendants, err := r.descendants(ctx, id, own)
		if err != nil {
			return removed, err
		}
		victims = append(victims, descendants...)
		if len(victims) == 0 {
			break
		}
		if round == maxRevokeRounds {
			return removed, wrapErr("revoke "+id.String(), fmt.Errorf(
				"descendants still appear after %d rounds of list and delete (created concurrently?); revoke again", round))
		}
		ids := make([]string, len(victims))
		for i, t := range victims {
			ids[i] = t.EntryID
		}
		deleted, err := r.delete(ctx, ids)
		removed = append(removed, slices.DeleteFunc(victims, func(t Task) bool { return !deleted[t.EntryID] })...)
		if err != nil {
			return removed, err
		}
		victims = nil
	}
	if len(own) == 0 {
		if len(removed) == 0 {
			return nil, refuse(ReasonNotFound, "", "no entry for %s: unknown task, or revoked already", id)
		}
		return removed, refuse(ReasonNotFound, "", "no entry for %s: unknown task, or revoked already; removed %d descendant entries that still named it", id, len(removed))
	}
	return removed, nil
}

// descendants lists the entries whose chain holds id, at the depth of each
// of id's entries (one, unless the datastore was edited by hand); without
// an entry of id, or with one that does not decode, at any depth.
//
// Task-scoped entries carry the root of their chain as their hint: one
// ListEntries by_hint of id's root lists id's whole tree, and the chains
// are tested here. Entries of the v1 layout (written before it, live for
// at most one max_ttl after an upgrade) carry no hint but shared
// delegator:<d>:<id> selectors: one more ListEntries matching any of them.
// Without a decodable entry of id its root is unknown: every entry is
// listed then (id's entry deleted by hand or broken, or its descendants
// left behind by a revoke cut short: rare, and what a revoke again then
// costs).
func (r *Registrar) descendants(ctx context.Context, id spiffeid.ID, own []*types.Entry) ([]Task, error) {
	depths := map[int]bool{}
	roots := map[string]bool{}
	for _, e := range own {
		t, err := r.task(e)
		if err != nil {
			clear(depths)
			break
		}
		depths[t.Claims.Depth()] = true
		roots[rootOf(t.ID, t.Claims)] = true
	}
	if len(depths) == 0 {
		for i := range svid.MaxChain {
			depths[i] = true
		}
		clear(roots)
	}
	m := &types.SelectorMatch{Match: types.SelectorMatch_MATCH_ANY}
	for _, d := range slices.Sorted(maps.Keys(depths)) {
		m.Selectors = append(m.Selectors, &types.Selector{Type: r.cfg.selectorType, Value: delegatorSelector(d, id.String())})
	}
	entries, err := r.list(ctx, &entryv1.ListEntriesRequest_Filter{BySelectors: m})
	if err != nil {
		return nil, err
	}
	var filters []*entryv1.ListEntriesRequest_Filter
	if len(roots) == 0 {
		filters = append(filters, &entryv1.ListEntriesRequest_Filter{}) // every entry
	} else {
		for _, root := range slices.Sorted(maps.Keys(roots)) {
			filters = append(filters, &entryv1.ListEntriesRequest_Filter{ByHint: wrapperspb.String(root)})
		}
	}
	for _, f := range filters {
		more, err := r.list(ctx, f)
		if err != nil {
			return nil, err
		}
		entries = append(entries, more...)
	}
	seen := map[string]bool{}
	for _, e := range own {
		seen[e.GetId()] = true
	}
	var out []*types.Entry
	for _, e := range entries {
		if !seen[e.GetId()] && r.names(e, id.String(), depths) {
			seen[e.GetId()] = true
			out = append(out, e)
		}
	}
	tasks := r.lenientTasks(out)
	slices.SortFunc(tasks, func(a, b Task) int {
		return cmp.Or(cmp.Compare(a.Claims.Depth(), b.Claims.Depth()), cmp.Compare(a.ID.String(), b.ID.String()))
	})
	return tasks, nil
}

// names reports whether entry e's selectors name ancestor at one of the
// depths: delegator:<d>:<ancestor> (v1) or task:<t>:delegator:<d>:<ancestor>
// (task-scoped). It reads the raw selectors, so that an entry that does
// not decode is still found.
func (r *Registrar) names(e *types.Entry, ancestor string, depths map[int]bool) bool {
	for _, s := range e.GetSelectors() {
		if s.GetType() != r.cfg.selectorType {
			continue
		}
		v := s.GetValue()
		if rest, ok := strings.CutPrefix(v, "task:"); ok {
			if _, after, scoped := strings.Cut(rest, ":"); scoped {
				v = after
			}
		}
		rest, ok := strings.CutPrefix(v, "delegator:")
		if !ok {
			continue
		}
		idx, who, ok := strings.Cut(rest, ":")
		if d, err := strconv.Atoi(idx); ok && err == nil && depths[d] && who == ancestor {
			return true
		}
	}
	return false
}

// lenientTasks decodes entries, keeping those that do not decode with
// zero Claims.
func (r *Registrar) lenientTasks(entries []*types.Entry) []Task {
	out := make([]Task, len(entries))
	for i, e := range entries {
		t, err := r.task(e)
		if err != nil {
			t.Claims = svid.Claims{}
		}
		out[i] = t
	}
	return out
}

// delete removes entries in one call and reports which are gone. An entry
// already gone (NotFound) counts as removed by someone else: it is neither
// reported nor an error.
func (r *Registrar) delete(ctx context.Context, ids []string) (map[string]bool, error) {
	resp, err := r.client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: ids})
	if err != nil {
		return nil, wrapErr("delete entries", err)
	}
	deleted := make(map[string]bool, len(ids))
	var failed []string
	for _, res := range resp.GetResults() {
		switch code := codes.Code(res.GetStatus().GetCode()); code {
		case codes.OK:
			deleted[res.GetId()] = true
		case codes.NotFound:
		default:
			failed = append(failed, res.GetId()+": "+status.Error(code, res.GetStatus().GetMessage()).Error())
		}
	}
	if len(failed) > 0 {
		return deleted, wrapErr("delete entries", errors.New(strings.Join(failed, "; ")))
	}
	return deleted, nil
}

// LiveTasks lists the SPIFFE IDs of every task entry in SPIRE, for the
// verifiers' liveness view, in no particular order. It decodes no claims,
// so one malformed entry does not hide the others, and asks SPIRE for the
// fields it reads (SPIFFE ID, selectors, expiry, creation time) rather than whole
// entries; entries that have expired are left out (SPIRE prunes them on its
// own schedule).
func (r *Registrar) LiveTasks(ctx context.Context) ([]string, error) {
	ids, _, err := r.LiveTasksCreated(ctx)
	return ids, err
}

// LiveTasksCreated is LiveTasks with the creation time of each task's
// registration entry (SPIRE's created_at, Unix seconds; created[i] is
// ids[i]'s): a task revoked and created again under the same SPIFFE ID
// is told apart by it (the liveness feed carries it to the verifiers).
func (r *Registrar) LiveTasksCreated(ctx context.Context) (ids []string, created []int64, err error) {
	ids, created, _, err = r.LiveTasksExpiring(ctx)
	return ids, created, err
}

// LiveTasksExpiring is LiveTasksCreated with each entry's expiry (Unix
// seconds, 0 for none): a task that leaves the listing before its expiry
// was revoked or deleted.
func (r *Registrar) LiveTasksExpiring(ctx context.Context) (ids []string, created, expires []int64, err error) {
	now := r.cfg.now()
	entries, err := r.listReq(ctx, &entryv1.ListEntriesRequest{
		Filter:     &entryv1.ListEntriesRequest_Filter{},
		OutputMask: &types.EntryMask{SpiffeId: true, Selectors: true, ExpiresAt: true, CreatedAt: true},
	})
	if err != nil {
		return nil, nil, nil, wrapErr("live tasks", err)
	}
	ids = make([]string, 0, len(entries))
	created = make([]int64, 0, len(entries))
	expires = make([]int64, 0, len(entries))
	for _, e := range entries {
		if !r.isTaskEntry(e) || (e.GetExpiresAt() != 0 && !now.Before(time.Unix(e.GetExpiresAt(), 0))) {
			continue
		}
		id, _ := idFromProto(e.GetSpiffeId())
		ids = append(ids, id.String())
		created = append(created, e.GetCreatedAt())
		expires = append(expires, e.GetExpiresAt())
	}
	return ids, created, expires, nil
}
