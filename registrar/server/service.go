package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentid/agentid/audit"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Service implements the task API (registrarv1.RegistrarServer) on a
// *registrar.Registrar. It keeps no state of its own. Register it on an
// operator server ([Service.OperatorServer]: every RPC, no authentication
// beyond the socket's permissions) and an agent server
// ([Service.AgentServer]: SPIFFE mTLS, DelegateTask only). Its one state
// is in memory: the tasks revoked through it, for the quiet period before
// a revoked task ID is created again ([WithQuietPeriod]) and for the
// liveness deltas.
type Service struct {
	registrarv1.UnimplementedRegistrarServer

	r    *registrar.Registrar
	cfg  config
	hub  *livenessHub // WatchLiveness's one lister and its subscribers
	tomb *tombstones  // the tasks revoked through this registrar
}

var _ registrarv1.RegistrarServer = (*Service)(nil)

type config struct {
	audit       *audit.Writer
	parentID    string
	jwtBundles  jwtbundle.Source
	jwtAudience string
	log         *slog.Logger
	metrics     *metrics

	livenessSubscribers []spiffeid.ID
	livenessInterval    time.Duration

	quiet time.Duration
	now   func() time.Time
}

// Option configures a Service.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithDefaultParentID sets the SPIRE parent ID (a node's SPIFFE ID) of root
// tasks created without one.
func WithDefaultParentID(id string) Option {
	return optionFunc(func(c *config) { c.parentID = id })
}

// WithJWTSVIDs accepts DelegateTask callers that send a JWT-SVID as
// "authorization: Bearer <token>": the token is validated against bundles
// and must name audience. Without this option a bearer token is refused.
func WithJWTSVIDs(bundles jwtbundle.Source, audience string) Option {
	return optionFunc(func(c *config) { c.jwtBundles, c.jwtAudience = bundles, audience })
}

// WithAudit appends every task action — created, delegated, refused,
// revoked — to the audit log as a "registrar" record.
func WithAudit(w *audit.Writer) Option {
	return optionFunc(func(c *config) { c.audit = w })
}

// WithLogger sets the logger of the service's decisions (default: discard).
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.log = l })
}

// WithQuietPeriod sets how long after revoking a task this registrar
// refuses to create its task ID again, with ReasonRecentlyRevoked (default
// DefaultQuietPeriod; 0 turns it off). Revocations through this
// registrar count, and, while it feeds verifiers, tasks its listing saw
// leave SPIRE before their expiry (revoked through another registrar or
// the agentid CLI, deleted in SPIRE directly).
func WithQuietPeriod(d time.Duration) Option {
	return optionFunc(func(c *config) { c.quiet = d })
}

// WithClock sets the clock of the quiet period (default time.Now).
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) { c.now = now })
}

// withMetrics counts created, refused and revoked tasks (the daemon's).
func withMetrics(m *metrics) Option {
	return optionFunc(func(c *config) { c.metrics = m })
}

// New returns the task API on r.
func New(r *registrar.Registrar, opts ...Option) *Service {
	cfg := config{log: slog.New(slog.DiscardHandler), quiet: DefaultQuietPeriod, now: time.Now}
	for _, o := range opts {
		o.apply(&cfg)
	}
	tomb := newTombstones(cfg.now, cfg.quiet)
	return &Service{r: r, cfg: cfg, tomb: tomb, hub: newLivenessHub(r.LiveTasksExpiring, cfg.livenessInterval, tomb)}
}

// quiet refuses a create of the task agent/task (a given task ID; a
// generated one is new) within the quiet period of its revocation through
// this registrar.
func (s *Service) quiet(agent, task string) error {
	if task == "" {
		return nil
	}
	id, err := s.r.TaskID(agent, task)
	if err != nil {
		return nil // the registrar refuses the name itself
	}
	if ts, until, ok := s.tomb.quietUntil(id.String()); ok {
		return recentlyRevoked(id.String(), ts, until, s.cfg.quiet)
	}
	return nil
}

// quietAfterWrite takes back a task just written whose ID became quiet
// between the check and the write (its revoke ran meanwhile: review 20),
// and refuses it.
func (s *Service) quietAfterWrite(ctx context.Context, task registrar.Task, _ bool) error {
	if err := s.quiet(task.Claims.Agent, task.Claims.Task); err != nil {
		if _, rerr := s.r.Revoke(ctx, task.ID); rerr != nil && registrar.ReasonOf(rerr) != registrar.ReasonNotFound {
			s.cfg.log.Warn("a task created within its quiet period could not be taken back", "task", task.ID.String(), "err", rerr)
		}
		return err
	}
	return nil
}

// delegationQuiet turns a quiet-period refusal into the one a delegating
// task gets: recently_revoked, without when or through which registrar.
func delegationQuiet(err error) error {
	if registrar.ReasonOf(err) == registrar.ReasonRecentlyRevoked {
		return &registrar.Error{Reason: registrar.ReasonRecentlyRevoked, Detail: "this task ID is not available now: use a fresh task ID"}
	}
	return err
}

// CreateTask creates a root task, or with parent_task a delegated child of
// that task. Operators only.
func (s *Service) CreateTask(ctx context.Context, in *registrarv1.CreateTaskRequest) (*registrarv1.Task, error) {
	req, err := request(in.GetAgent(), in.GetTask(), in.GetModel(), in.GetPrompt(), in.GetScope(),
		in.GetDeadline(), in.GetTtlSeconds(), in.GetSelectors(), in.GetParentId())
	if err != nil {
		s.countRefusal(registrar.ReasonInvalidRequest)
		return nil, err
	}
	req.Principal = in.GetPrincipal()
	if err := s.quiet(req.Agent, req.Task); err != nil {
		return s.answer(ctx, "CreateTask", "", registrar.Task{}, err)
	}
	req.BeforeWrite = func() error { return s.quiet(req.Agent, req.Task) }
	var task registrar.Task
	if in.GetParentTask() == "" {
		if req.ParentID == "" {
			req.ParentID = s.cfg.parentID
		}
		task, err = s.r.Create(ctx, req)
	} else {
		parent, perr := spiffeid.FromString(in.GetParentTask())
		if perr != nil {
			s.countRefusal(registrar.ReasonInvalidRequest)
			return nil, status.Errorf(codes.InvalidArgument, "invalid_request: parent_task %q: %v", in.GetParentTask(), perr)
		}
		req.Operator = true // the operator socket: an operator sets the child's selectors
		task, err = s.r.CreateChild(ctx, parent, req)
	}
	if err == nil {
		err = s.quietAfterWrite(ctx, task, false)
	}
	return s.answer(ctx, "CreateTask", "", task, err)
}

// maxCreateBatch bounds the requests of one CreateTasks call.
const maxCreateBatch = 5000

// CreateTasks creates many root tasks in one call (Registrar.CreateBatch:
// one SPIRE BatchCreateEntry per 500). Each request is answered on its own,
// as CreateTask would. Operators only.
func (s *Service) CreateTasks(ctx context.Context, in *registrarv1.CreateTasksRequest) (*registrarv1.CreateTasksResponse, error) {
	if n := len(in.GetTasks()); n > maxCreateBatch {
		return nil, status.Errorf(codes.InvalidArgument, "invalid_request: %d tasks in one call, at most %d", n, maxCreateBatch)
	}
	out := &registrarv1.CreateTasksResponse{Results: make([]*registrarv1.CreateTaskResult, len(in.GetTasks()))}
	var reqs []registrar.Request
	var idx []int
	for i, t := range in.GetTasks() {
		req, err := request(t.GetAgent(), t.GetTask(), t.GetModel(), t.GetPrompt(), t.GetScope(),
			t.GetDeadline(), t.GetTtlSeconds(), t.GetSelectors(), t.GetParentId())
		if err == nil && t.GetParentTask() != "" {
			err = status.Error(codes.InvalidArgument, "invalid_request: parent_task: CreateTasks creates root tasks only; delegate with CreateTask")
		}
		if err != nil {
			s.countRefusal(registrar.ReasonInvalidRequest)
			out.Results[i] = batchResult(nil, err)
			continue
		}
		if err := s.quiet(req.Agent, req.Task); err != nil {
			task, err := s.answer(ctx, "CreateTasks", "", registrar.Task{}, err)
			out.Results[i] = batchResult(task, err)
			continue
		}
		req.Principal = t.GetPrincipal()
		if req.ParentID == "" {
			req.ParentID = s.cfg.parentID
		}
		reqs = append(reqs, req)
		idx = append(idx, i)
	}
	for k, res := range s.r.CreateBatch(ctx, reqs) {
		if res.Err == nil {
			res.Err = s.quietAfterWrite(ctx, res.Task, false)
		}
		task, err := s.answer(ctx, "CreateTasks", "", res.Task, res.Err)
		out.Results[idx[k]] = batchResult(task, err)
	}
	return out, nil
}

// batchResult renders one answer of CreateTasks.
func batchResult(task *registrarv1.Task, err error) *registrarv1.CreateTaskResult {
	if err == nil {
		return &registrarv1.CreateTaskResult{Task: task}
	}
	st := status.Convert(err)
	res := &registrarv1.CreateTaskResult{Code: int32(st.Code()), Message: st.Message()}
	switch r := ReasonOf(err); {
	case r != 0:
		res.Reason = r.String()
	case st.Code() == codes.InvalidArgument: // malformed fields, checked here
		res.Reason = registrar.ReasonInvalidRequest.String()
	}
	return res
}

// DelegateTask creates a child of the calling task: the parent is the
// caller's SPIFFE ID (its verified X.509-SVID, or a JWT-SVID bearer), and
// the registrar reads the parent's record from its entry.
func (s *Service) DelegateTask(ctx context.Context, in *registrarv1.DelegateTaskRequest) (*registrarv1.Task, error) {
	caller, err := s.caller(ctx)
	if err != nil {
		s.cfg.log.Info("delegation refused", "err", err)
		return nil, err
	}
	req, err := request(in.GetAgent(), in.GetTask(), in.GetModel(), in.GetPrompt(), in.GetScope(),
		in.GetDeadline(), in.GetTtlSeconds(), in.GetSelectors(), in.GetParentId())
	if err != nil {
		s.countRefusal(registrar.ReasonInvalidRequest)
		return nil, err
	}
	if err := s.sameNode(ctx, caller.id, req.ParentID); err != nil {
		s.record("DelegateTask", caller.String(), "", svid.Claims{}, "deny", "", err.Error())
		return nil, err
	}
	req.CallerIssued = caller.issued
	// The quiet period is asked after the policy (BeforeWrite), and a
	// delegating task is told only that the ID is not available: a task
	// learns nothing of other trees' revocations (review 20).
	req.BeforeWrite = func() error { return delegationQuiet(s.quiet(req.Agent, req.Task)) }
	task, err := s.r.CreateChild(ctx, caller.id, req)
	if err == nil {
		err = delegationQuiet(s.quietAfterWrite(ctx, task, true))
	}
	return s.answer(ctx, "DelegateTask", caller.String(), task, err)
}

// GetTask returns one task. Operators only.
func (s *Service) GetTask(ctx context.Context, in *registrarv1.GetTaskRequest) (*registrarv1.Task, error) {
	id, err := taskIDArg(in.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	task, err := s.r.Get(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return taskProto(task)
}

// maxListPage bounds ListTasks' page_size: 5,000 tasks are about 2 MB,
// half of gRPC's default 4 MB message limit.
const maxListPage = 5000

// ListTasks lists the tasks that match every filter given, one page per
// call when page_size is set. Operators only.
func (s *Service) ListTasks(ctx context.Context, in *registrarv1.ListTasksRequest) (*registrarv1.ListTasksResponse, error) {
	if n := in.GetPageSize(); n < 0 || n > maxListPage {
		return nil, status.Errorf(codes.InvalidArgument, "invalid_request: page_size %d is not 0..%d", n, maxListPage)
	}
	f := registrar.Filter{Agent: in.GetAgent(), Principal: in.GetPrincipal(), Model: in.GetModel(), ParentTask: in.GetParentTask()}
	var (
		l   registrar.Listing
		err error
	)
	if in.GetPageSize() == 0 && in.GetPageToken() == "" {
		l, err = s.r.List(ctx, f)
	} else {
		l, err = s.r.ListPage(ctx, f, in.GetPageSize(), in.GetPageToken())
	}
	if err != nil {
		return nil, toStatus(err)
	}
	out := &registrarv1.ListTasksResponse{Tasks: make([]*registrarv1.Task, len(l.Tasks)), NextPageToken: l.NextPageToken}
	for i, t := range l.Tasks {
		if out.Tasks[i], err = taskProto(t); err != nil {
			return nil, err
		}
	}
	for _, bad := range l.Invalid {
		s.cfg.log.Warn("task entry does not decode", "task", bad.ID.String(), "entry", bad.EntryID, "err", bad.Err)
		out.Invalid = append(out.Invalid, &registrarv1.InvalidTaskEntry{SpiffeId: bad.ID.String(), EntryId: bad.EntryID, Error: bad.Err.Error()})
	}
	return out, nil
}

// RevokeTask deletes a task's entry and its descendants'. Operators only.
// Tasks removed before an error are reported in the log. None of their task
// IDs is created again through this registrar within the quiet period.
func (s *Service) RevokeTask(ctx context.Context, in *registrarv1.RevokeTaskRequest) (*registrarv1.RevokeTaskResponse, error) {
	id, err := taskIDArg(in.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	defer s.tomb.revoking(id.String())() // quiet while it runs, too
	removed, err := s.r.Revoke(ctx, id)
	s.cfg.metrics.tasksRevoked(len(removed))
	if len(removed) > 0 {
		ids := make([]string, len(removed))
		for i, t := range removed {
			ids[i] = t.ID.String()
		}
		// Not created again within the quiet period; named in the next
		// liveness delta.
		if early := s.tomb.add(ids); early > 0 {
			s.cfg.log.Warn("more revocations within recreate_quiet_period than the registrar keeps: the oldest task IDs may be created again early",
				"forgotten", early, "kept", maxTombstones)
		}
	}
	for _, t := range removed {
		s.cfg.log.Info("task revoked", "task", t.ID.String(), "entry", t.EntryID, "revoked", id.String())
		s.record("RevokeTask", "operator", t.ID.String(), t.Claims, "allow", "", "revoked with "+id.String())
	}
	if err != nil {
		s.cfg.log.Warn("revoke failed", "task", id.String(), "err", err)
		return nil, toStatus(err)
	}
	out := &registrarv1.RevokeTaskResponse{Removed: make([]*registrarv1.Task, len(removed))}
	for i, t := range removed {
		out.Removed[i] = lenientTaskProto(t)
	}
	return out, nil
}

// sameNode refuses a delegating task's request to place the child's entry
// under another node than its own: which node runs a task is the
// operator's call (CreateTask with parent_task), not the delegating agent's.
func (s *Service) sameNode(ctx context.Context, parent spiffeid.ID, nodeID string) error {
	if nodeID == "" {
		return nil
	}
	p, err := s.r.Get(ctx, parent)
	if err != nil {
		s.countRefusal(registrar.ReasonOf(err))
		return toStatus(err)
	}
	if p.ParentID != nodeID {
		s.cfg.metrics.refused(reasonNodeNotAllowed)
		return status.Errorf(codes.PermissionDenied, reasonNodeNotAllowed+": a delegated task runs under its parent's node %s, not %s", p.ParentID, nodeID)
	}
	return nil
}

// answer logs a create's outcome and converts it.
func (s *Service) answer(ctx context.Context, method, caller string, task registrar.Task, err error) (*registrarv1.Task, error) {
	if err != nil {
		reason := registrar.ReasonOf(err)
		s.countRefusal(reason)
		s.cfg.log.LogAttrs(ctx, slog.LevelInfo, "task refused", slog.String("method", method),
			slog.String("caller", caller), slog.String("reason", reasonName(reason)), slog.String("err", err.Error()))
		var re *registrar.Error
		rule := ""
		if errors.As(err, &re) {
			rule = re.Rule
		}
		s.record(method, caller, "", svid.Claims{}, "deny", rule, err.Error())
		return nil, toStatus(err)
	}
	s.cfg.metrics.taskCreated()
	s.record(method, caller, task.ID.String(), task.Claims, "allow", "", "task created")
	s.cfg.log.LogAttrs(ctx, slog.LevelInfo, "task created", slog.String("method", method), slog.String("caller", caller),
		slog.String("task", task.ID.String()), slog.String("entry", task.EntryID),
		slog.String("deadline", task.Claims.Deadline.Format(time.RFC3339)))
	return taskProto(task)
}

// countRefusal counts a refusal by its reason; an error without one (SPIRE
// unreachable, internal) is no refusal.
func (s *Service) countRefusal(r registrar.Reason) {
	if r != 0 {
		s.cfg.metrics.refused(r.String())
	}
}

func reasonName(r registrar.Reason) string {
	if r == 0 {
		return "error"
	}
	return r.String()
}

// request builds a registrar request from the fields common to
// CreateTaskRequest and DelegateTaskRequest.
func request(agent, task, model, prompt string, scope []string, deadline string, ttl int64, selectors []string, parentID string) (registrar.Request, error) {
	req := registrar.Request{Agent: agent, Task: task, Model: model, Prompt: prompt, Scope: scope,
		TTL: time.Duration(ttl) * time.Second, Selectors: selectors, ParentID: parentID}
	if ttl > int64(maxTTL/time.Second) || ttl < -int64(maxTTL/time.Second) {
		return req, status.Errorf(codes.InvalidArgument, "invalid_request: ttl_seconds %d out of range", ttl)
	}
	if deadline != "" {
		d, err := time.Parse(time.RFC3339, deadline)
		if err != nil {
			return req, status.Errorf(codes.InvalidArgument, "invalid_request: deadline %q is not RFC 3339: %v", deadline, err)
		}
		req.Deadline = d
	}
	return req, nil
}

// maxTTL keeps ttl_seconds clear of time.Duration overflow (the issuance
// policy bounds it far more tightly).
const maxTTL = 100 * 365 * 24 * time.Hour

func taskIDArg(s string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return id, status.Errorf(codes.InvalidArgument, "invalid_request: spiffe_id %q: %v", s, err)
	}
	return id, nil
}

// taskProto converts a task; its claims are the canonical claims JSON.
func taskProto(t registrar.Task) (*registrarv1.Task, error) {
	claims, err := t.Claims.MarshalJSON()
	if err != nil {
		return nil, status.Error(codes.Internal, fmt.Sprintf("task %s: claims: %v", t.ID, err))
	}
	return &registrarv1.Task{SpiffeId: t.ID.String(), EntryId: t.EntryID, ClaimsJson: string(claims),
		ExpiresAt: t.Claims.Deadline.Unix(), ParentId: t.ParentID, Selectors: t.Selectors, Incarnation: t.Incarnation}, nil
}

// lenientTaskProto converts a task of a revoke report, whose claims are
// zero when its entry did not decode: it then has no claims_json.
func lenientTaskProto(t registrar.Task) *registrarv1.Task {
	if p, err := taskProto(t); err == nil && t.Claims.V != 0 {
		return p
	}
	return &registrarv1.Task{SpiffeId: t.ID.String(), EntryId: t.EntryID, ParentId: t.ParentID, Selectors: t.Selectors}
}

// record appends a registrar action to the audit log, when there is one.
// The peer is the caller (a task SPIFFE ID, or "operator"); the action's
// path names the task acted on and the claims are that task's.
func (s *Service) record(method, caller, target string, c svid.Claims, decision, rule, reason string) {
	if s.cfg.audit == nil {
		return
	}
	rec := audit.Record{
		Type:     audit.TypeRegistrar,
		Peer:     caller,
		Action:   &audit.Action{Kind: "registrar", Name: method, Path: target},
		Decision: decision,
		Reason:   reason,
	}
	if rule != "" {
		rec.Rules = []string{rule}
	}
	if c.V != 0 {
		rec.Claims = c.AppendJSON(nil)
	}
	if err := s.cfg.audit.Append(rec); err != nil {
		s.cfg.log.Error("audit log", "err", err)
	}
}
