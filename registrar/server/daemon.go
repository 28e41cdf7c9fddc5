package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/mysqlstore"
	"github.com/agentid/agentid/internal/recovery"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Sources are where the daemon's own X.509-SVID and the trust bundles come
// from. The daemon opens the Workload API (workload_api_socket) when New is
// given none; tests and embedders pass their own.
type Sources struct {
	X509SVID    x509svid.Source
	X509Bundles x509bundle.Source
	// JWTBundles verifies JWT-SVID bearers (with Config.JWTAudience).
	JWTBundles jwtbundle.Source
}

// Daemon is a running agentid-registrar: the task API on the operator
// socket and, optionally, the agent mTLS listener, over one registrar whose
// issuance policy reloads on SIGHUP; optionally metrics and health over
// HTTP.
type Daemon struct {
	cfg     *Config
	log     *slog.Logger
	policy  *registrar.PolicyHolder
	svc     *Service
	conn    *grpc.ClientConn // to the SPIRE server's API socket
	entry   entryHealth
	metrics *metrics
	closers []func() error

	operator, agent         *grpc.Server
	ops                     *http.Server
	operatorL, agentL, opsL net.Listener
	stopOnce                sync.Once
	serveErr                chan error
	serving                 sync.WaitGroup
	gracefulStopTimeout     time.Duration
}

// NewDaemon loads the issuance policy, connects to the SPIRE server's API
// socket and the sources, and binds the listeners; Run serves. src may be
// nil: the Workload API at cfg.WorkloadAPISocket is then used when the
// configuration needs an SVID or bundles.
func NewDaemon(ctx context.Context, cfg *Config, log *slog.Logger, src *Sources) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, metrics: newMetrics(), serveErr: make(chan error, 3), gracefulStopTimeout: 10 * time.Second}
	if err := d.init(ctx, src); err != nil {
		d.closeAll()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) init(ctx context.Context, src *Sources) error {
	cfg := d.cfg
	policy, err := registrar.NewPolicyHolder(cfg.IssuancePolicy)
	if err != nil {
		return err
	}
	d.policy = policy
	target := cfg.ServerAPISocket
	if !strings.HasPrefix(target, "unix:") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(d.entry.unary))
	if err != nil {
		return fmt.Errorf("server_api_socket %q: %w", cfg.ServerAPISocket, err)
	}
	d.conn = conn
	d.closers = append(d.closers, conn.Close)
	r := registrar.New(conn, cfg.TrustDomain, policy, registrar.WithSelectorType(cfg.SelectorType),
		registrar.WithMaxSVIDTTL(cfg.MaxX509SVIDTTL, cfg.MaxJWTSVIDTTL))
	if src == nil && cfg.WorkloadAPISocket != "" {
		if src, err = d.workloadAPI(ctx); err != nil {
			return err
		}
	}
	opts := []Option{WithDefaultParentID(cfg.ParentID), WithLogger(d.log), withMetrics(d.metrics),
		WithQuietPeriod(cfg.RecreateQuietPeriod)}
	if q := cfg.RecreateQuietPeriod; q < MinQuietPeriodFor(cfg.MaxJWTSVIDTTL) {
		d.log.Warn("recreate_quiet_period is shorter than max_jwt_svid_ttl plus SPIRE's default cache windows: a task ID revoked and created again within it may leave the revoked incarnation's JWT-SVIDs in use (docs/registrar.md)",
			"recreate_quiet_period", q.String(), "max_jwt_svid_ttl", cfg.MaxJWTSVIDTTL.String(), "at_least", MinQuietPeriodFor(cfg.MaxJWTSVIDTTL).String())
	}
	if cfg.AuditPath != "" || cfg.AuditMySQL != nil {
		aopts := audit.Options{Durability: cfg.AuditDurability, SignerID: cfg.AuditSignerID,
			MaxBytes: cfg.AuditMaxBytes, RotateInterval: cfg.AuditRotateInterval, MaxSegments: cfg.AuditMaxSegments}
		if cfg.AuditWitness != nil {
			aopts.Witness = cfg.AuditWitness
		}
		if src != nil {
			aopts.Signer = src.X509SVID
		}
		var w *audit.Writer
		closeLog := func() error { return w.Close() }
		if cfg.AuditMySQL != nil {
			w, closeLog, err = mysqlstore.Open(ctx, *cfg.AuditMySQL, aopts)
		} else {
			w, err = audit.Open(cfg.AuditPath, aopts)
		}
		if err != nil {
			return err
		}
		d.closers = append(d.closers, closeLog)
		opts = append(opts, WithAudit(w))
	}
	if cfg.JWTAudience != "" {
		if src == nil || src.JWTBundles == nil {
			return errors.New("jwt_audience: no JWT bundle source")
		}
		opts = append(opts, WithJWTSVIDs(src.JWTBundles, cfg.JWTAudience))
	}
	if len(cfg.LivenessSubscribers) > 0 {
		opts = append(opts, WithLiveness(cfg.LivenessSubscribers, cfg.LivenessInterval))
	}
	d.svc = New(r, opts...)
	return d.listen(src)
}

// workloadAPI opens the SPIRE agent's Workload API for the registrar's own
// SVID and the bundles; it waits (up to 30 s) for the first update.
func (d *Daemon) workloadAPI(ctx context.Context) (*Sources, error) {
	addr := d.cfg.WorkloadAPISocket
	if filepath.IsAbs(addr) {
		addr = "unix://" + addr
	}
	opt := workloadapi.WithClientOptions(workloadapi.WithAddr(addr))
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	xs, err := workloadapi.NewX509Source(wctx, opt)
	if err != nil {
		return nil, fmt.Errorf("workload API %s: %w", d.cfg.WorkloadAPISocket, err)
	}
	d.closers = append(d.closers, xs.Close)
	src := &Sources{X509SVID: xs, X509Bundles: xs}
	if d.cfg.JWTAudience != "" {
		js, err := workloadapi.NewJWTSource(wctx, opt)
		if err != nil {
			return nil, fmt.Errorf("workload API %s: %w", d.cfg.WorkloadAPISocket, err)
		}
		d.closers = append(d.closers, js.Close)
		src.JWTBundles = js
	}
	if s, err := xs.GetX509SVID(); err == nil {
		d.log.Info("registrar SVID", "spiffe_id", s.ID.String())
	}
	return src, nil
}

func (d *Daemon) listen(src *Sources) error {
	// The panic guard inside the metrics, so a panicking handler is
	// counted as Internal.
	count := grpc.ChainUnaryInterceptor(d.metrics.unary, recovery.UnaryServerInterceptor(d.log.Error))
	if p := d.cfg.OperatorSocket; p != "" {
		l, err := ListenUnix(p, d.cfg.OperatorSocketMode)
		if err != nil {
			return err
		}
		d.operatorL, d.operator = l, d.svc.OperatorServer(count)
	}
	if a := d.cfg.Listen; a != "" {
		if src == nil || src.X509SVID == nil || src.X509Bundles == nil {
			return errors.New("listen: no X.509-SVID or bundle source")
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("listen %s: %w", a, err)
		}
		d.agentL, d.agent = l, d.svc.AgentServer(src.X509SVID, src.X509Bundles, count)
	}
	if a := d.cfg.MetricsListen; a != "" {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", a, err)
		}
		d.opsL, d.ops = l, &http.Server{Handler: d.opsHandler(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	}
	return nil
}

// Service is the daemon's task API.
func (d *Daemon) Service() *Service { return d.svc }

// AgentAddr is the bound address of the mTLS listener (nil without one).
func (d *Daemon) AgentAddr() net.Addr {
	if d.agentL == nil {
		return nil
	}
	return d.agentL.Addr()
}

// MetricsAddr is the bound address of the metrics and health listener (nil
// without one).
func (d *Daemon) MetricsAddr() net.Addr {
	if d.opsL == nil {
		return nil
	}
	return d.opsL.Addr()
}

// Reload loads the issuance policy file again. On error the policy in force
// stays, and the error is logged, counted and returned.
func (d *Daemon) Reload() error {
	err := d.policy.Reload()
	d.metrics.reloaded(err)
	if err != nil {
		d.log.Error("issuance policy reload failed; keeping the last good policy", "file", d.policy.Path(), "err", err)
		return err
	}
	d.log.Info("issuance policy reloaded", "file", d.policy.Path())
	return nil
}

// Run serves until ctx is done (then stops gracefully) or a listener fails,
// reloading the issuance policy on SIGHUP.
func (d *Daemon) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if d.operator != nil {
		d.serve("operator", d.operatorL, d.operator.Serve)
	}
	if d.agent != nil {
		d.serve("agent", d.agentL, d.agent.Serve)
	}
	if d.ops != nil {
		d.serve("metrics", d.opsL, d.ops.Serve)
	}
	for {
		select {
		case <-ctx.Done():
			return d.Close()
		case err := <-d.serveErr:
			d.Close()
			return err
		case <-hup:
			d.Reload()
		}
	}
}

func (d *Daemon) serve(name string, l net.Listener, serve func(net.Listener) error) {
	d.log.Info("serving", "listener", name, "addr", l.Addr().String())
	d.serving.Add(1)
	go func() {
		defer d.serving.Done()
		if err := serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, http.ErrServerClosed) {
			d.serveErr <- fmt.Errorf("%s listener: %w", name, err)
		}
	}()
}

// Close stops the servers gracefully (in-flight calls finish, for at most
// ten seconds), removes the operator socket and releases the sources and
// the SPIRE connection.
func (d *Daemon) Close() error {
	var err error
	d.stopOnce.Do(func() { err = d.closeAll() })
	return err
}

func (d *Daemon) closeAll() error {
	if d.svc != nil {
		d.svc.StopLiveness() // the verifiers' streams never end by themselves
	}
	for _, g := range []*grpc.Server{d.operator, d.agent} {
		if g != nil {
			d.gracefulStop(g)
		}
	}
	if d.ops != nil {
		ctx, cancel := context.WithTimeout(context.Background(), d.gracefulStopTimeout)
		if d.ops.Shutdown(ctx) != nil {
			d.ops.Close()
		}
		cancel()
	}
	for _, l := range []net.Listener{d.operatorL, d.agentL, d.opsL} {
		if l != nil {
			l.Close() // the server has closed it when it served
		}
	}
	d.serving.Wait()
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}

func (d *Daemon) gracefulStop(g *grpc.Server) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.gracefulStopTimeout):
		g.Stop()
		<-done
	}
}
