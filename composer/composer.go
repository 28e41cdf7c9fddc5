package composer

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"golang.org/x/sync/singleflight"
)

// DefaultLookupTimeout bounds one read of the server's Entry API.
const DefaultLookupTimeout = 2 * time.Second

// Composer turns task SPIFFE IDs into claims, reading their entries from an
// [EntrySource] through a bounded, expiring cache. It is safe for
// concurrent use. A new configuration means a new Composer (and an empty
// cache).
type Composer struct {
	cfg     *Config
	src     EntrySource
	now     func() time.Time
	timeout time.Duration
	cache   *cache
	missing *cache // no_entry lookups, for NegativeCacheTTL
	group   singleflight.Group
}

// Option configures a [Composer].
type Option interface{ apply(*Composer) }

type optionFunc func(*Composer)

func (f optionFunc) apply(c *Composer) { f(c) }

// WithClock sets the clock used for deadlines and the cache (default
// time.Now).
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *Composer) { c.now = now })
}

// WithLookupTimeout bounds each read of the entry source (default
// [DefaultLookupTimeout]).
func WithLookupTimeout(d time.Duration) Option {
	return optionFunc(func(c *Composer) { c.timeout = d })
}

// New returns a Composer for cfg (from [ParseConfig]) reading entries from
// src.
func New(cfg *Config, src EntrySource, opts ...Option) *Composer {
	c := &Composer{cfg: cfg, src: src, now: time.Now, timeout: DefaultLookupTimeout}
	for _, o := range opts {
		o.apply(c)
	}
	c.cache = newCache(cfg.CacheSize, cfg.CacheTTL)
	c.missing = newCache(cfg.CacheSize, cfg.NegativeCacheTTL)
	return c
}

// Config returns the composer's configuration. It must not be modified.
func (c *Composer) Config() *Config { return c.cfg }

// Applies reports whether the composer adds claims to the SVIDs of id:
// task SPIFFE IDs only. For any other ID (server, agents, the CA health
// check, ordinary workloads) it reads nothing and adds nothing.
func Applies(id spiffeid.ID) bool { return svid.IsTaskID(id) }

// Claims returns the validated claims of the task id. The error is an
// *[Error].
func (c *Composer) Claims(ctx context.Context, id spiffeid.ID) (svid.Claims, error) {
	t, err := c.task(ctx, id)
	if err != nil {
		return svid.Claims{}, err
	}
	return t.claims.Clone(), nil
}

// Extension returns the X.509 extension carrying the claims of the task
// id, under the configured OID. The error is an *[Error].
func (c *Composer) Extension(ctx context.Context, id spiffeid.ID) (pkix.Extension, error) {
	t, err := c.task(ctx, id)
	if err != nil {
		return pkix.Extension{}, err
	}
	ext := t.ext
	ext.Value = bytes.Clone(ext.Value)
	return ext, nil
}

// JWTClaims returns the JWT claims of the task id: "agentid" and, for a
// delegated task, "act" ([svid.Claims.JWTClaims]). The error is an *[Error].
func (c *Composer) JWTClaims(ctx context.Context, id spiffeid.ID) (map[string]any, error) {
	t, err := c.task(ctx, id)
	if err != nil {
		return nil, err
	}
	return t.claims.JWTClaims(), nil
}

// JWTClaimsDeadline is JWTClaims and the task's deadline, which caps the
// JWT-SVID's exp.
func (c *Composer) JWTClaimsDeadline(ctx context.Context, id spiffeid.ID) (map[string]any, time.Time, error) {
	t, err := c.task(ctx, id)
	if err != nil {
		return nil, time.Time{}, err
	}
	return t.claims.JWTClaims(), t.claims.Deadline, nil
}

// task returns the task of id from its current registration entry. Every
// call reads the entry (concurrent calls for one ID share the read): a
// task ID may be revoked and created again with other claims, and only the
// entry tells which incarnation SPIRE is signing for. The decoded task —
// claims, rendered extension — is reused while the entry is the same one
// (entry ID, revision and expiry) and was decoded less than cache_ttl ago.
// The deadline is checked on every call.
func (c *Composer) task(ctx context.Context, id spiffeid.ID) (*task, error) {
	key := id.String()
	if !Applies(id) {
		return nil, refuse(key, ReasonNotTask, nil, "not spiffe://<td>/agent/<agent>/task/<task>")
	}
	now := c.now()
	t, err := c.fetch(ctx, id, key)
	if err != nil {
		return nil, err
	}
	if !now.Before(t.claims.Deadline) {
		c.cache.drop(key)
		return nil, refuse(key, ReasonExpired, nil, "task deadline %s has passed", t.claims.Deadline.Format(time.RFC3339))
	}
	return t, nil
}

// fetch looks id up once for all concurrent callers. The shared lookup
// does not end when one caller gives up; each caller waits at most until
// its own context ends.
func (c *Composer) fetch(ctx context.Context, id spiffeid.ID, key string) (*task, error) {
	ch := c.group.DoChan(key, func() (_ any, err error) {
		// DoChan runs this in its own goroutine and re-panics there, where
		// no caller can recover: a bug fails this lookup instead.
		defer func() {
			if r := recover(); r != nil {
				err = refuse(key, ReasonLookupFailed, fmt.Errorf("panic: %v", r), "looking the entry up")
			}
		}()
		start := c.now()
		if _, ok := c.missing.get(key, start); ok {
			return nil, errNoEntry(key)
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		t, err := c.load(lctx, id, key, start)
		if ReasonOf(err) == ReasonNoEntry {
			c.missing.put(key, nil, start)
		}
		if err != nil {
			c.cache.drop(key)
			return nil, err
		}
		return t, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*task), nil
	case <-ctx.Done():
		return nil, refuse(key, ReasonLookupFailed, ctx.Err(), "waiting for the entry lookup")
	}
}

// load reads the entry of id and decodes it, or reuses the task decoded
// from the same entry (see task).
func (c *Composer) load(ctx context.Context, id spiffeid.ID, key string, start time.Time) (*task, error) {
	entries, err := c.src.EntriesByID(ctx, id)
	switch {
	case err != nil:
		return nil, refuse(key, ReasonLookupFailed, err, "reading the entry from the server API")
	case len(entries) == 0:
		return nil, errNoEntry(key)
	case len(entries) > 1:
		return nil, refuse(key, ReasonDuplicateEntry, nil, "more than one registration entry, a task has exactly one")
	}
	e := entries[0]
	version := entryVersion(e)
	if t, ok := c.cache.get(key, start); ok && t.entry == version {
		return t, nil
	}
	t, err := c.decode(id, key, e)
	if err != nil {
		return nil, err
	}
	t.entry = version
	c.cache.put(key, t, start)
	return t, nil
}

// entryVersion names one version of one registration entry: a task created
// again gets another entry ID, an updated entry another revision.
func entryVersion(e *types.Entry) string {
	return e.GetId() + "/" + strconv.FormatInt(e.GetRevisionNumber(), 10) + "/" + strconv.FormatInt(e.GetExpiresAt(), 10)
}

func errNoEntry(key string) error {
	return refuse(key, ReasonNoEntry, nil, "no registration entry (never created or revoked)")
}

// decode rebuilds and validates the claims of entry e for id.
func (c *Composer) decode(id spiffeid.ID, key string, e *types.Entry) (*task, error) {
	if got := e.GetSpiffeId(); got.GetTrustDomain() != id.TrustDomain().Name() || got.GetPath() != id.Path() {
		return nil, refuse(key, ReasonInvalidEntry, nil, "the server returned entry %q of another SPIFFE ID", e.GetId())
	}
	if e.GetExpiresAt() <= 0 {
		return nil, refuse(key, ReasonExpired, nil, "entry %q has no expires_at (task deadline)", e.GetId())
	}
	deadline := time.Unix(e.GetExpiresAt(), 0).UTC()
	now := c.now()
	if !now.Before(deadline) {
		return nil, refuse(key, ReasonExpired, nil, "entry %q expired at %s", e.GetId(), deadline.Format(time.RFC3339))
	}
	claims, err := svid.FromSelectors(c.selectorValues(e), deadline)
	if err != nil {
		return nil, refuse(key, ReasonInvalidEntry, err, "entry %q: %s selectors", e.GetId(), c.cfg.SelectorType)
	}
	if err := claims.Validate(id, svid.WithTrustDomains(c.cfg.TrustDomains...), svid.WithTime(now)); err != nil {
		r := ReasonInvalidEntry
		if errors.Is(err, &svid.ValidationError{Reason: svid.ReasonExpired}) {
			r = ReasonExpired
		}
		return nil, refuse(key, r, err, "entry %q", e.GetId())
	}
	ext, err := claims.Extension(c.cfg.OID)
	if err != nil {
		return nil, refuse(key, ReasonInvalidEntry, err, "entry %q: rendering the extension", e.GetId())
	}
	return &task{claims: claims, ext: ext}, nil
}

// selectorValues returns the values of e's selectors of the configured
// type; selectors of other types (unix:uid:…, k8s:ns:…) are not claims.
func (c *Composer) selectorValues(e *types.Entry) []string {
	out := make([]string, 0, len(e.GetSelectors()))
	for _, s := range e.GetSelectors() {
		if s.GetType() == c.cfg.SelectorType {
			out = append(out, s.GetValue())
		}
	}
	return out
}
