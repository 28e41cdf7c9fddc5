package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/recovery"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

// Daemon is a running verifier.
type Daemon struct {
	cfg     *Config
	log     *slog.Logger
	store   *policies.Store
	v       *verifier.Verifier
	metrics *metrics

	svids   x509svid.Source // nil when the config gives no SVID
	closers []func() error
	servers []func(context.Context) error
	wg      sync.WaitGroup
	addrs   map[string]net.Addr
}

// New loads the policy and the sources and binds the listeners, but serves
// nothing until Serve.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, addrs: map[string]net.Addr{}}
	store, diags := policies.NewStore(cfg.PolicyDir)
	if diags.HasErrors() {
		return nil, fmt.Errorf("policy %s: %s", cfg.PolicyDir, diags.Error())
	}
	d.store = store
	x509s, jwts, err := d.sources(ctx)
	if err != nil {
		d.Close()
		return nil, err
	}
	var w *audit.Writer
	if cfg.Audit != nil {
		opts := cfg.Audit.Options
		opts.Signer = d.svids
		if w, err = audit.Open(cfg.Audit.Path, opts); err != nil {
			d.Close()
			return nil, err
		}
		d.closers = append(d.closers, w.Close)
	}
	d.metrics = newMetrics(func() float64 {
		if w == nil {
			return 0
		}
		return float64(w.Pending())
	})
	d.metrics.policyOK.Set(1)
	d.v = &verifier.Verifier{
		Auth: verifier.NewAuthenticator(verifier.Config{
			X509Bundles: x509s, JWTBundles: jwts, Audiences: cfg.JWTAudiences,
			TrustDomains: cfg.TrustDomains, ExtensionOID: cfg.ExtensionOID,
		}),
		Policy: verifier.StorePolicy{Store: store},
		Audit:  w,
	}
	if err := d.listen(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Verifier is the daemon's verifier (for tests and embedding).
func (d *Daemon) Verifier() *verifier.Verifier { return d.v }

// Addr is the bound address of a front-end: "ext_authz", "proxy",
// "check_api" or "metrics".
func (d *Daemon) Addr(name string) net.Addr { return d.addrs[name] }

func (d *Daemon) sources(ctx context.Context) (x509bundle.Source, jwtbundle.Source, error) {
	if sock := d.cfg.WorkloadAPISocket; sock != "" {
		addr := sock
		if filepath.IsAbs(addr) {
			addr = "unix://" + addr
		}
		opt := workloadapi.WithClientOptions(workloadapi.WithAddr(addr))
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		xs, err := workloadapi.NewX509Source(wctx, opt)
		if err != nil {
			return nil, nil, fmt.Errorf("workload API %s: %w", sock, err)
		}
		d.closers = append(d.closers, xs.Close)
		js, err := workloadapi.NewJWTSource(wctx, opt)
		if err != nil {
			return nil, nil, fmt.Errorf("workload API %s: %w", sock, err)
		}
		d.closers = append(d.closers, js.Close)
		d.svids = xs
		return xs, js, nil
	}
	f := d.cfg.Files
	xb, err := x509bundle.Load(d.cfg.TrustDomain, f.X509Bundle)
	if err != nil {
		return nil, nil, err
	}
	var jb jwtbundle.Source
	if f.JWTBundle != "" {
		b, err := jwtbundle.Load(d.cfg.TrustDomain, f.JWTBundle)
		if err != nil {
			return nil, nil, err
		}
		jb = b
	}
	if f.SVIDCert != "" {
		s, err := x509svid.Load(f.SVIDCert, f.SVIDKey)
		if err != nil {
			return nil, nil, err
		}
		d.svids = s
	}
	return xb, jb, nil
}

func (d *Daemon) listen() error {
	if a := d.cfg.ExtAuthzListen; a != "" {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("ext_authz listen %s: %w", a, err)
		}
		s := grpc.NewServer(grpc.MaxRecvMsgSize(4<<20),
			grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(d.log.Error)),
			grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(d.log.Error)))
		(&verifier.ExtAuthz{V: d.v, MCPPaths: d.cfg.ExtAuthzMCPPaths}).Register(s)
		d.addrs["ext_authz"] = l.Addr()
		d.serve(func() error { return s.Serve(l) }, func(context.Context) error { s.GracefulStop(); return nil })
	}
	if a := d.cfg.ProxyListen; a != "" {
		if d.svids == nil {
			return errors.New("proxy needs the verifier's own SVID")
		}
		l, err := tls.Listen("tcp", a, verifier.ServerTLSConfig(d.svids, d.v.Auth.X509Bundles()))
		if err != nil {
			return fmt.Errorf("proxy listen %s: %w", a, err)
		}
		d.addrs["proxy"] = l.Addr()
		d.httpServer(l, verifier.NewProxy(d.v, d.cfg.ProxyUpstream, d.cfg.ProxyMCPPaths))
	}
	if a := d.cfg.CheckAPIListen; a != "" {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("check_api listen %s: %w", a, err)
		}
		d.addrs["check_api"] = l.Addr()
		d.httpServer(l, d.checkAPI())
	}
	if a := d.cfg.MetricsListen; a != "" {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", a, err)
		}
		d.addrs["metrics"] = l.Addr()
		d.httpServer(l, d.opsHandler())
	}
	return nil
}

func (d *Daemon) httpServer(l net.Listener, h http.Handler) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: verifier.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	d.serve(func() error { return s.Serve(l) }, s.Shutdown)
}

func (d *Daemon) serve(run func() error, stop func(context.Context) error) {
	d.servers = append(d.servers, stop)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			d.log.Error("server stopped", "err", err)
		}
	}()
}

// Reload loads the policy directory again; on error the previous policy
// stays in force and the error is returned, logged and counted.
func (d *Daemon) Reload() error {
	diags := d.store.Reload(d.cfg.PolicyDir)
	if diags.HasErrors() {
		d.metrics.reloads.WithLabelValues("error").Inc()
		d.metrics.policyOK.Set(0)
		d.log.Error("policy reload failed; keeping the last good policy", "dir", d.cfg.PolicyDir, "err", diags.Error(), "digest", d.store.Set().Digest())
		return diags
	}
	d.metrics.reloads.WithLabelValues("ok").Inc()
	d.metrics.policyOK.Set(1)
	d.log.Info("policy reloaded", "dir", d.cfg.PolicyDir, "digest", d.store.Set().Digest())
	return nil
}

// Run serves until ctx is done, reloading the policy on SIGHUP and when a
// file in the policy directory changes.
func (d *Daemon) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	watch, err := d.watch()
	if err != nil {
		d.log.Warn("policy directory not watched; reload with SIGHUP", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return d.Close()
		case <-hup:
			d.Reload()
		case <-watch:
			d.Reload()
		}
	}
}

// watch reports (debounced) changes to the policy directory.
func (d *Daemon) watch() (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(d.cfg.PolicyDir); err != nil {
		w.Close()
		return nil, err
	}
	d.closers = append(d.closers, w.Close)
	out := make(chan struct{}, 1)
	go func() {
		var timer <-chan time.Time
		for {
			select {
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				timer = time.After(100 * time.Millisecond) // editors write in bursts
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				d.log.Warn("policy watch", "err", err)
			case <-timer:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

// Close stops the servers gracefully and releases the sources and the
// audit log (flushing it).
func (d *Daemon) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, stop := range d.servers {
		stop(ctx)
	}
	d.wg.Wait()
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.servers, d.closers = nil, nil
	return errors.Join(errs...)
}

func (d *Daemon) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if d.store.Set() == nil {
			http.Error(w, "no policy loaded", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready: policy %s\n", d.store.Set().Digest())
	})
	return mux
}

// checkRequest is the check API's JSON body.
type checkRequest struct {
	// Certificate is a PEM chain (leaf first) or JWT a JWT-SVID.
	Certificate string          `json:"certificate,omitempty"`
	JWT         string          `json:"jwt,omitempty"`
	Action      verifier.Action `json:"action"`
}

type checkResponse struct {
	Allow    bool     `json:"allow"`
	Peer     string   `json:"peer,omitempty"`
	Rules    []string `json:"rules,omitempty"`
	Reason   string   `json:"reason"`
	Errors   []string `json:"errors,omitempty"`
	Policy   string   `json:"policy_digest,omitempty"`
	DenyCode string   `json:"deny_code,omitempty"`
}

// checkAPI serves POST /v1/check: credential + action → decision (JSON).
func (d *Daemon) checkAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		var req checkRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "bad check request: "+err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, d.check(r.Context(), &req))
	})
	return mux
}

func (d *Daemon) check(ctx context.Context, req *checkRequest) checkResponse {
	start := time.Now()
	var p verifier.Peer
	var err error
	switch {
	case req.Certificate != "":
		p, err = d.v.Auth.PEM(req.Certificate)
	case req.JWT != "":
		p, err = d.v.Auth.JWT(req.JWT)
	default:
		err = &verifier.DenyError{Reason: verifier.ReasonNoCredential, Err: errors.New("give certificate or jwt")}
	}
	if err != nil {
		dd := d.v.Denied(req.Action, err)
		d.observe("check_api", dd, start)
		var de *verifier.DenyError
		errors.As(err, &de)
		resp := checkResponse{Reason: dd.Reason}
		if de != nil {
			resp.DenyCode = de.Reason
		}
		return resp
	}
	dd := d.v.Check(ctx, &p, req.Action, verifier.Request{})
	d.observe("check_api", dd, start)
	return checkResponse{Allow: dd.Allow, Peer: p.ID.String(), Rules: dd.RuleStrings(), Reason: dd.Reason, Errors: dd.Errors, Policy: dd.PolicyDigest}
}

func (d *Daemon) observe(frontend string, dd verifier.Decision, start time.Time) {
	rule := ""
	if len(dd.Rules) > 0 {
		rule = dd.Rules[0].Name
	}
	word := "deny"
	if dd.Allow {
		word = "allow"
	}
	d.metrics.decisions.WithLabelValues(frontend, word, rule).Inc()
	d.metrics.latency.WithLabelValues(frontend).Observe(time.Since(start).Seconds())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
