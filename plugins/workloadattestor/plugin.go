// Package workloadattestor adapts the agentid attestor (package attestor)
// to SPIRE's WorkloadAttestor plugin interface (workloadattestor/v1 and
// config/v1). It holds no logic beyond translating requests, responses and
// errors; cmd/agentid-attestor serves it.
//
// The selector values it returns carry no type: SPIRE prefixes them with
// the plugin's name in agent.conf (conventionally "agentid").
package workloadattestor

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/internal/recovery"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	_ pluginsdk.NeedsLogger                     = (*Plugin)(nil)
	_ workloadattestorv1.WorkloadAttestorServer = (*Plugin)(nil)
	_ configv1.ConfigServer                     = (*Plugin)(nil)
	_ attestor.Logger                           = hclog.Logger(nil)
)

// Plugin is the agentid WorkloadAttestor. The zero value is ready to be
// served; Attest fails with FailedPrecondition until Configure succeeds.
type Plugin struct {
	workloadattestorv1.UnsafeWorkloadAttestorServer
	configv1.UnsafeConfigServer

	// opts apply to the attestor of every configuration (tests set the
	// proc root through the config and pin the clock here).
	opts []attestor.Option

	logMu sync.Mutex
	log   hclog.Logger

	cache    *attestor.DigestCache
	attestor atomic.Pointer[attestor.Attestor]
}

// New returns a Plugin; opts apply to the attestor of every configuration.
func New(opts ...attestor.Option) *Plugin {
	return &Plugin{opts: opts, cache: attestor.NewDigestCache(0)}
}

// SetLogger is called by the plugin framework with SPIRE's logger.
func (p *Plugin) SetLogger(log hclog.Logger) {
	p.logMu.Lock()
	p.log = log
	p.logMu.Unlock()
}

func (p *Plugin) logger() hclog.Logger {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if p.log == nil {
		return hclog.NewNullLogger()
	}
	return p.log
}

// Attest returns the selector values of the task the process runs, or none
// for a process without an acceptable manifest (refusals are logged as
// warnings). It fails only for a process that cannot be inspected.
func (p *Plugin) Attest(ctx context.Context, req *workloadattestorv1.AttestRequest) (_ *workloadattestorv1.AttestResponse, err error) {
	defer recovery.Call(p.logger().Error, "Attest", &err)
	a := p.attestor.Load()
	if a == nil {
		return nil, status.Error(codes.FailedPrecondition, "agentid attestor: not configured")
	}
	sel, err := a.AttestContext(ctx, int(req.GetPid()))
	if err != nil && ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "agentid attestor: %v", err)
	}
	return &workloadattestorv1.AttestResponse{SelectorValues: sel}, nil
}

// Configure parses and validates the HCL configuration and swaps it in
// atomically; attestations in flight finish on the previous one. It may be
// called again at any time (SIGUSR1 with plugin_data_file).
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (_ *configv1.ConfigureResponse, err error) {
	defer recovery.Call(p.logger().Error, "Configure", &err)
	a, err := p.build(req.GetHclConfiguration())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p.attestor.Store(a)
	cfg := a.Config()
	p.logger().Info("Configured", "manifest_dir", cfg.ManifestDir, "inherit_depth", cfg.InheritDepth,
		"allowed_owner_uids", cfg.AllowedOwnerUIDs, "require_exe_sha256", cfg.RequireExeSHA256,
		"allow_same_user", cfg.AllowSameUser, "max_exe_bytes", cfg.MaxExeBytes)
	if cfg.AllowSameUser {
		p.logger().Warn("INSECURE: allow_same_user is set: a process that could write its own manifest gets its selectors; for single-user development only")
	}
	if err := (attestor.DirPolicy{Owners: cfg.AllowedOwnerUIDs, GroupWritable: true}).Check(cfg.ManifestDir); err != nil {
		p.logger().Warn("Manifest directory not usable yet", "error", err.Error())
	}
	return &configv1.ConfigureResponse{}, nil
}

// Validate checks a configuration with the same build function as
// Configure. (SPIRE 1.13 does not call it.)
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (_ *configv1.ValidateResponse, err error) {
	defer recovery.Call(p.logger().Error, "Validate", &err)
	if _, err := p.build(req.GetHclConfiguration()); err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: []string{err.Error()}}, nil
	}
	return &configv1.ValidateResponse{Valid: true, Notes: []string{"configuration valid"}}, nil
}

func (p *Plugin) build(hcl string) (*attestor.Attestor, error) {
	cfg, err := attestor.ParseConfig(hcl)
	if err != nil {
		return nil, err
	}
	opts := append([]attestor.Option{attestor.WithLogger(logAdapter{p}), attestor.WithDigestCache(p.cache)}, p.opts...)
	return attestor.New(cfg, opts...)
}

// logAdapter sends the attestor's warnings to whatever logger the framework
// set, even if SetLogger comes after Configure.
type logAdapter struct{ p *Plugin }

func (l logAdapter) Warn(msg string, args ...any)  { l.p.logger().Warn(msg, args...) }
func (l logAdapter) Debug(msg string, args ...any) { l.p.logger().Debug(msg, args...) }
