package registrar

import (
	"crypto/rand"
	"io"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"google.golang.org/grpc"
)

// Defaults of the registrar's options. DefaultMaxX509TTL is minutes, not
// SPIRE's usual hour: without a liveness feed a revoked task's X.509-SVID
// is out of use within minutes (docs/registrar.md has what it costs SPIRE
// in signing rate).
const (
	DefaultMaxX509TTL = 5 * time.Minute
	DefaultMaxJWTTTL  = 5 * time.Minute
	DefaultMinTTL     = 30 * time.Second
	DefaultPageSize   = 500
)

// Registrar manages tasks as SPIRE registration entries through the Entry
// API. It keeps no state besides its configuration: the SPIRE datastore is
// the only store, so any number of registrars may serve the same server.
// A Registrar is safe for concurrent use.
type Registrar struct {
	client entryv1.EntryClient
	td     spiffeid.TrustDomain
	policy PolicySource
	cfg    config
}

// New returns a registrar for trust domain td that talks to SPIRE's Entry
// API over conn (typically the server's local API socket). policy decides
// Create and CreateChild; it may be nil for a registrar that only shows,
// lists and revokes.
func New(conn grpc.ClientConnInterface, td spiffeid.TrustDomain, policy PolicySource, opts ...Option) *Registrar {
	cfg := config{
		now:          time.Now,
		rand:         rand.Reader,
		selectorType: svid.DefaultSelectorType,
		maxX509TTL:   DefaultMaxX509TTL,
		maxJWTTTL:    DefaultMaxJWTTTL,
		minTTL:       DefaultMinTTL,
		pageSize:     DefaultPageSize,
	}
	for _, o := range opts {
		o.apply(&cfg)
	}
	return &Registrar{client: entryv1.NewEntryClient(conn), td: td, policy: policy, cfg: cfg}
}

// TrustDomain is the trust domain of the tasks the registrar manages.
func (r *Registrar) TrustDomain() spiffeid.TrustDomain { return r.td }

// Option configures a Registrar.
type Option interface{ apply(*config) }

type config struct {
	now          func() time.Time
	rand         io.Reader
	selectorType string
	maxX509TTL   time.Duration
	maxJWTTTL    time.Duration
	minTTL       time.Duration
	pageSize     int32
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) { c.now = now })
}

// WithRandom sets the source of generated task IDs (default crypto/rand).
func WithRandom(r io.Reader) Option {
	return optionFunc(func(c *config) { c.rand = r })
}

// WithSelectorType sets the selector type of the task selectors: the
// attestor plugin's name in agent.conf (default svid.DefaultSelectorType).
func WithSelectorType(t string) Option {
	return optionFunc(func(c *config) { c.selectorType = t })
}

// WithMaxSVIDTTL bounds the entries' x509_svid_ttl and jwt_svid_ttl
// (defaults DefaultMaxX509TTL and DefaultMaxJWTTTL). Both are also bounded
// by the time left to the task's deadline.
func WithMaxSVIDTTL(x509, jwt time.Duration) Option {
	return optionFunc(func(c *config) { c.maxX509TTL, c.maxJWTTTL = x509, jwt })
}

// WithMinTTL sets the shortest time from creation to a deadline that is
// accepted (default DefaultMinTTL): SVIDs live at most until the deadline,
// and shorter ones would expire before they are of use.
func WithMinTTL(d time.Duration) Option {
	return optionFunc(func(c *config) { c.minTTL = d })
}

// WithPageSize sets the page size of ListEntries calls (default
// DefaultPageSize).
func WithPageSize(n int32) Option {
	return optionFunc(func(c *config) { c.pageSize = n })
}

// Request asks for a task.
type Request struct {
	// Agent is the agent name.
	Agent string
	// Task is the task ID; one is generated (NewTaskID) when empty.
	Task string
	// Model identifies the model the agent runs.
	Model string
	// Prompt is the system prompt's digest, "sha256:<hex>".
	Prompt string
	// Scope lists the requested scope tokens.
	Scope []string
	// Principal is on whose behalf the task runs. A child inherits its
	// parent's: leave it empty or give the same.
	Principal string
	// Deadline ends the task. At most one of Deadline and TTL; with
	// neither, a root task gets the agent's max_ttl and a child its
	// parent's deadline. It is truncated to whole seconds.
	Deadline time.Time
	// TTL sets the deadline to now + TTL.
	TTL time.Duration
	// Selectors are extra selectors "type:value" (e.g. "unix:uid:1001",
	// "k8s:ns:agents") that the workload must also present. Only an
	// operator sets them: a delegated child keeps its parent's, and a
	// child request may only repeat them. One selector of the task type is
	// accepted here: the executable pin "<type>:exe:sha256:<hex>" (the
	// same as ExeSHA256).
	Selectors []string
	// ExeSHA256 pins the task to one executable: the hex SHA-256 of the
	// binary its process runs (for a script, its interpreter; see
	// attestor.ExecutableDigest). The entry then carries the task
	// selector exe:sha256:<hex>, which the attestor emits from the real
	// executable, so a process running anything else does not match.
	ExeSHA256 string
	// Operator says that an operator, not the delegating agent, asks for a
	// delegated child: its Selectors then replace the parent's. Only
	// operator paths (the operator socket, `agentid task create
	// --parent-task`) set it; the delegation API never does.
	Operator bool
	// ParentID is the SPIFFE ID of the SPIRE agent (node) the entry hangs
	// under. Required for a root task; a child defaults to its parent's.
	ParentID string
	// CallerIssued is, for a child requested by the delegating task itself
	// (the delegation API), when the credential it authenticated with was
	// issued: a JWT-SVID's iat, an X.509-SVID's NotBefore plus
	// [X509Backdate]. A credential issued before the parent's registration
	// entry was created belongs to a revoked incarnation of the parent (its
	// task ID was created again) and is refused with ReasonParentNotFound.
	// Zero (operator paths) skips the check.
	CallerIssued time.Time
	// BeforeWrite, if set, is called once every check of the request has
	// passed, just before the entry is written; an error refuses the
	// request (the delegation API's quiet period: asked after the policy,
	// so that its refusal tells a caller nothing the policy would not).
	BeforeWrite func() error
}

// Task is a task's registration entry.
type Task struct {
	// ID is the task's SPIFFE ID.
	ID spiffeid.ID
	// EntryID is the SPIRE registration entry ID.
	EntryID string
	// ParentID is the SPIFFE ID of the SPIRE agent (node) the entry hangs
	// under.
	ParentID string
	// Claims is the task record; Claims.Deadline is the entry's expiry.
	// Zero for an entry that does not decode (only in Revoke's report).
	Claims svid.Claims
	// Selectors are the extra selectors, "type:value" (not the task
	// type's).
	Selectors []string
	// ExeSHA256 is the executable pin, "" if none.
	ExeSHA256 string
	// Incarnation names this registration entry of the task: random, new
	// for every entry the registrar creates (the selector
	// task:<id>:incarnation:<hex>). The task record carries it to `agentid
	// run`, whose manifest makes the attestor emit it: a process launched
	// for one incarnation never matches another entry of the same task ID.
	// "" for an entry written before incarnations.
	Incarnation string
	// X509SVIDTTL and JWTSVIDTTL are the entry's SVID lifetimes.
	X509SVIDTTL, JWTSVIDTTL time.Duration
	// CreatedAt is when SPIRE created the entry (zero if it did not say).
	CreatedAt time.Time
}
