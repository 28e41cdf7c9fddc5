// Package credentialcomposer adapts the agentid composer (package composer)
// to SPIRE's CredentialComposer plugin interface (credentialcomposer/v1 and
// config/v1). It holds no logic of its own beyond translating requests,
// responses and errors; cmd/agentid-composer serves it.
package credentialcomposer

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentid/agentid/composer"
	"github.com/agentid/agentid/internal/recovery"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

var (
	_ pluginsdk.NeedsLogger                         = (*Plugin)(nil)
	_ credentialcomposerv1.CredentialComposerServer = (*Plugin)(nil)
	_ configv1.ConfigServer                         = (*Plugin)(nil)
	_ io.Closer                                     = (*Plugin)(nil)
)

// closeGrace is how long a replaced server API connection stays open for
// lookups that were in flight when Configure swapped it.
const closeGrace = 2 * composer.DefaultLookupTimeout

// Plugin is the agentid CredentialComposer. The zero value is ready to be
// served; it refuses task SVIDs until configured.
type Plugin struct {
	credentialcomposerv1.UnsafeCredentialComposerServer
	configv1.UnsafeConfigServer

	log hclog.Logger

	// opts are passed to every composer.New (tests pin the clock).
	opts []composer.Option

	mu    sync.Mutex // serialises Configure and Close
	state atomic.Pointer[state]
}

// state is one configuration: the composer and its server API connection.
type state struct {
	composer *composer.Composer
	conn     *grpc.ClientConn
}

// New returns a Plugin; opts apply to the composer of every configuration.
func New(opts ...composer.Option) *Plugin {
	return &Plugin{opts: opts}
}

// SetLogger is called by the plugin framework with SPIRE's logger.
func (p *Plugin) SetLogger(log hclog.Logger) { p.log = log }

func (p *Plugin) logger() hclog.Logger {
	if p.log == nil {
		return hclog.NewNullLogger()
	}
	return p.log
}

// Configure parses and validates the HCL configuration and swaps it in
// atomically; lookups in flight finish on the previous configuration. It
// may be called again at any time (SIGUSR1 with plugin_data_file).
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (_ *configv1.ConfigureResponse, err error) {
	defer recovery.Call(p.logger().Error, "Configure", &err)
	cfg, err := composer.ParseConfig(req.GetHclConfiguration(), req.GetCoreConfiguration().GetTrustDomain())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.state.Load()
	conn := reuseConn(old, cfg)
	if conn == nil {
		if conn, err = composer.Dial(cfg.Target()); err != nil {
			return nil, status.Errorf(codes.Internal, "composer: server API client for %s: %v", cfg.Target(), err)
		}
	}
	src := composer.NewAPISource(entryv1.NewEntryClient(conn))
	p.state.Store(&state{composer: composer.New(cfg, src, p.opts...), conn: conn})
	if old != nil && old.conn != conn {
		time.AfterFunc(closeGrace, func() { old.conn.Close() })
	}
	p.logger().Info("Configured", "server_api_socket", cfg.ServerAPISocket, "extension_oid", cfg.OID.String(),
		"trust_domains", len(cfg.TrustDomains), "cache_ttl", cfg.CacheTTL.String(), "cache_size", cfg.CacheSize,
		"selector_type", cfg.SelectorType)
	return &configv1.ConfigureResponse{}, nil
}

// reuseConn keeps the previous connection when the socket is unchanged.
func reuseConn(old *state, cfg *composer.Config) *grpc.ClientConn {
	if old != nil && old.composer.Config().ServerAPISocket == cfg.ServerAPISocket {
		return old.conn
	}
	return nil
}

// Validate checks a configuration with the same build function as
// Configure. (SPIRE 1.13 does not call it.)
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (_ *configv1.ValidateResponse, err error) {
	defer recovery.Call(p.logger().Error, "Validate", &err)
	if _, err := composer.ParseConfig(req.GetHclConfiguration(), req.GetCoreConfiguration().GetTrustDomain()); err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: []string{err.Error()}}, nil
	}
	return &configv1.ValidateResponse{Valid: true, Notes: []string{"configuration valid"}}, nil
}

// Close releases the server API connection when SPIRE unloads the plugin.
func (p *Plugin) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.state.Swap(nil); s != nil {
		return s.conn.Close()
	}
	return nil
}

// ComposeServerX509CA keeps SPIRE's defaults: the CA is not a task.
func (p *Plugin) ComposeServerX509CA(context.Context, *credentialcomposerv1.ComposeServerX509CARequest) (_ *credentialcomposerv1.ComposeServerX509CAResponse, err error) {
	defer recovery.Call(p.logger().Error, "ComposeServerX509CA", &err)
	return nil, status.Error(codes.Unimplemented, "agentid composer leaves the server CA alone")
}

// ComposeServerX509SVID keeps SPIRE's defaults: the server is not a task.
func (p *Plugin) ComposeServerX509SVID(context.Context, *credentialcomposerv1.ComposeServerX509SVIDRequest) (_ *credentialcomposerv1.ComposeServerX509SVIDResponse, err error) {
	defer recovery.Call(p.logger().Error, "ComposeServerX509SVID", &err)
	return nil, status.Error(codes.Unimplemented, "agentid composer leaves the server SVID alone")
}

// ComposeAgentX509SVID keeps SPIRE's defaults: an agent is not a task.
func (p *Plugin) ComposeAgentX509SVID(context.Context, *credentialcomposerv1.ComposeAgentX509SVIDRequest) (_ *credentialcomposerv1.ComposeAgentX509SVIDResponse, err error) {
	defer recovery.Call(p.logger().Error, "ComposeAgentX509SVID", &err)
	return nil, status.Error(codes.Unimplemented, "agentid composer leaves agent SVIDs alone")
}

// ComposeWorkloadX509SVID adds the claims extension to a task's X.509-SVID,
// after the extensions other composers added (an extension of the same OID
// is replaced). Any other SVID is returned unchanged.
func (p *Plugin) ComposeWorkloadX509SVID(ctx context.Context, req *credentialcomposerv1.ComposeWorkloadX509SVIDRequest) (_ *credentialcomposerv1.ComposeWorkloadX509SVIDResponse, err error) {
	defer recovery.Call(p.logger().Error, "ComposeWorkloadX509SVID", &err)
	attrs := req.GetAttributes()
	c, id, err := p.forTask(req.GetSpiffeId())
	switch {
	case err != nil:
		return nil, err
	case c == nil:
		return &credentialcomposerv1.ComposeWorkloadX509SVIDResponse{Attributes: attrs}, nil
	}
	if attrs == nil {
		return nil, status.Error(codes.InvalidArgument, "request missing attributes")
	}
	ext, err := c.Extension(ctx, id)
	if err != nil {
		return nil, p.refuse(err)
	}
	attrs.ExtraExtensions = putExtension(attrs.ExtraExtensions, ext)
	return &credentialcomposerv1.ComposeWorkloadX509SVIDResponse{Attributes: attrs}, nil
}

// ComposeWorkloadJWTSVID merges the "agentid" and "act" claims into a
// task's JWT-SVID claims, keeping the others, and lowers "exp" to the
// task's deadline when it would run past it. For a root task an "act"
// claim already present is removed: "act" renders the delegation chain.
// Any other SVID is returned unchanged.
func (p *Plugin) ComposeWorkloadJWTSVID(ctx context.Context, req *credentialcomposerv1.ComposeWorkloadJWTSVIDRequest) (_ *credentialcomposerv1.ComposeWorkloadJWTSVIDResponse, err error) {
	defer recovery.Call(p.logger().Error, "ComposeWorkloadJWTSVID", &err)
	attrs := req.GetAttributes()
	c, id, err := p.forTask(req.GetSpiffeId())
	switch {
	case err != nil:
		return nil, err
	case c == nil:
		return &credentialcomposerv1.ComposeWorkloadJWTSVIDResponse{Attributes: attrs}, nil
	}
	if attrs.GetClaims() == nil {
		return nil, status.Error(codes.InvalidArgument, "request missing JWT claims")
	}
	claims, deadline, err := c.JWTClaimsDeadline(ctx, id)
	if err != nil {
		return nil, p.refuse(err)
	}
	// The token never outlives the task: SPIRE sets exp = now + TTL, which
	// a non-agentid service checks and nothing else.
	if exp := attrs.Claims.Fields["exp"]; exp == nil || exp.GetNumberValue() > float64(deadline.Unix()) {
		claims["exp"] = float64(deadline.Unix())
	}
	add, err := structpb.NewStruct(claims)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "composer: %s: encoding JWT claims: %v", id, err)
	}
	if attrs.Claims.Fields == nil {
		attrs.Claims.Fields = make(map[string]*structpb.Value, len(add.Fields))
	}
	delete(attrs.Claims.Fields, "act")
	for k, v := range add.Fields {
		attrs.Claims.Fields[k] = v
	}
	return &credentialcomposerv1.ComposeWorkloadJWTSVIDResponse{Attributes: attrs}, nil
}

// forTask returns the current composer and the parsed ID when rawID is a
// task SPIFFE ID; a nil composer and nil error mean "not a task: leave the
// SVID alone". A task ID before Configure is refused.
func (p *Plugin) forTask(rawID string) (*composer.Composer, spiffeid.ID, error) {
	id, err := spiffeid.FromString(rawID)
	if err != nil {
		return nil, spiffeid.ID{}, status.Errorf(codes.InvalidArgument, "malformed SPIFFE ID %q: %v", rawID, err)
	}
	if !composer.Applies(id) {
		return nil, id, nil
	}
	s := p.state.Load()
	if s == nil {
		p.logger().Error("Refusing to sign task SVID", "spiffe_id", rawID, "reason", "not_configured")
		return nil, id, status.Error(codes.FailedPrecondition, "not configured")
	}
	return s.composer, id, nil
}

// refuse logs a refusal and turns it into the gRPC error that fails the
// signing: Unavailable when the server API could not be read,
// PermissionDenied otherwise.
func (p *Plugin) refuse(err error) error {
	var e *composer.Error
	if !errors.As(err, &e) {
		p.logger().Error("Refusing to sign task SVID", "error", err)
		return status.Error(codes.Internal, err.Error())
	}
	p.logger().Error("Refusing to sign task SVID", "spiffe_id", e.ID, "reason", e.Reason.String(), "error", err)
	code := codes.PermissionDenied
	if e.Reason == composer.ReasonLookupFailed {
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}

// putExtension appends ext, or replaces an extension of the same OID so
// that the certificate never carries it twice.
func putExtension(exts []*credentialcomposerv1.X509Extension, ext pkix.Extension) []*credentialcomposerv1.X509Extension {
	pb := &credentialcomposerv1.X509Extension{Oid: ext.Id.String(), Value: ext.Value, Critical: ext.Critical}
	for i, e := range exts {
		if e.GetOid() == pb.Oid {
			exts[i] = pb
			return exts
		}
	}
	return append(exts, pb)
}
