package daemon

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/agentid/agentid/svid/httpsig"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/mysqlstore"
	"github.com/agentid/agentid/internal/recovery"
	"github.com/agentid/agentid/internal/strictjson"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpgw"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Daemon is a running verifier.
type Daemon struct {
	cfg     *Config
	log     *slog.Logger
	store   *policies.Store
	v       *verifier.Verifier
	metrics *metrics
	audit   *audit.Writer
	view    *verifier.LivenessView // nil without a liveness block
	mcp     *mcpgw.Gateway         // nil without an mcp block

	svids   x509svid.Source // nil when the config gives no SVID
	closers []func() error
	servers []func(context.Context) error
	wg      sync.WaitGroup
	addrs   map[string]net.Addr
	pwatch  atomic.Pointer[policyWatch] // nil until Run watches the policy directory
	// watching is closed once Run has set up the watch (or failed to)
	watching chan struct{}
	// bundleUpdates signal the Workload API sources' updates (nil with
	// files): each flushes the Authenticator's cache.
	bundleUpdates []<-chan struct{}
}

// New loads the policy and the sources and binds the listeners, but serves
// nothing until Serve.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, addrs: map[string]net.Addr{}, watching: make(chan struct{})}
	var resources []string // accepted only by the gateway's queries, which name it
	if cfg.MCP != nil {
		if err := cfg.MCP.loadSecrets(log.With("frontend", mcpgw.Frontend)); err != nil {
			return nil, err
		}
		resources = []string{cfg.MCP.Gateway.Resource}
	}
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
		closeLog := func() error { return w.Close() }
		if cfg.Audit.MySQL != nil {
			w, closeLog, err = mysqlstore.Open(ctx, *cfg.Audit.MySQL, opts)
		} else {
			w, err = audit.Open(cfg.Audit.Path, opts)
		}
		if err != nil {
			d.Close()
			return nil, err
		}
		d.closers = append(d.closers, closeLog)
	}
	d.audit = w
	d.metrics = newMetrics(w)
	d.metrics.policyOK.Set(1)
	d.v = &verifier.Verifier{
		Auth: verifier.NewAuthenticator(verifier.Config{
			X509Bundles: x509s, JWTBundles: jwts, Audiences: cfg.JWTAudiences, ResourceAudiences: resources,
			TrustDomains: cfg.TrustDomains, ExtensionOID: cfg.ExtensionOID,
		}),
		Policy:        verifier.StorePolicy{Store: store},
		Audit:         w,
		AuditFailOpen: cfg.Audit != nil && cfg.Audit.FailOpen,
		Receipts:      cfg.Audit != nil && cfg.Audit.Receipts,
		Headers:       cfg.IdentityHeaders,
		MaxFormBody:   cfg.MaxFormBody,
		Observe:       d.observe,
		Signatures: &verifier.Signatures{Require: cfg.Signatures.Require, Window: cfg.Signatures.Window,
			Algorithms: cfg.Signatures.Algorithms, MaxNonces: cfg.Signatures.MaxNonces,
			RecordBody: cfg.Signatures.RecordBody, MaxRecordedBody: cfg.Signatures.MaxRecordedBody},
	}
	if len(d.bundleUpdates) == 2 {
		d.flushOnBundleUpdates(d.bundleUpdates[0], d.bundleUpdates[1])
	}
	if lc := cfg.Liveness; lc != nil {
		d.view = &verifier.LivenessView{MaxStaleness: lc.MaxStaleness, FailOpen: lc.FailOpen, RememberRemoved: lc.RememberRevoked}
		d.v.Liveness = d.view.Check
		d.metrics.watchLiveness(d.view)
		if err := d.startLiveness(d.view); err != nil {
			d.Close()
			return nil, err
		}
	}
	if err := d.listen(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// flushOnBundleUpdates forgets the Authenticator's cached peers whenever
// a Workload API source updates (a bundle change, or the daemon's own SVID
// rotating): a CA or JWT key SPIRE removes from the bundle stops working
// at once instead of within the cache's TTL.
func (d *Daemon) flushOnBundleUpdates(x509s, jwts <-chan struct{}) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-x509s:
			case <-jwts:
			case <-stop:
				return
			}
			d.v.Auth.Flush()
		}
	}()
	d.closers = append(d.closers, func() error { close(stop); <-done; return nil })
}

// Verifier is the daemon's verifier (for tests and embedding).
func (d *Daemon) Verifier() *verifier.Verifier { return d.v }

// Addr is the bound address of a front-end: "ext_authz", "proxy",
// "check_api", "mcp" or "metrics".
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
		d.bundleUpdates = []<-chan struct{}{xs.Updated(), js.Updated()}
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
		opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(4 << 20),
			grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(d.log.Error)),
			grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(d.log.Error))}
		if tc, err := d.callersTLS("ext_authz", d.cfg.ExtAuthzCallers); err != nil {
			return err
		} else if tc != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		}
		s := (&verifier.ExtAuthz{V: d.v, MCPPaths: d.cfg.ExtAuthzMCPPaths}).NewServer(opts...)
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
		p := verifier.NewProxy(d.v, d.cfg.ProxyUpstream, d.cfg.ProxyMCPPaths)
		p.AllowUpgrades = d.cfg.ProxyAllowUpgrades
		d.httpServer(l, p).RegisterOnShutdown(p.CloseStreams)
	}
	if a := d.cfg.CheckAPIListen; a != "" {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("check_api listen %s: %w", a, err)
		}
		tc, err := d.callersTLS("check_api", d.cfg.CheckAPICallers)
		if err != nil {
			l.Close()
			return err
		}
		if tc != nil {
			l = tls.NewListener(l, tc)
		}
		d.addrs["check_api"] = l.Addr()
		d.httpServer(l, d.checkAPI())
	}
	if err := d.listenMCP(); err != nil {
		return err
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

// callersTLS is the mTLS server config of a front-end with allowed
// callers (nil without: plain, for loopback use).
func (d *Daemon) callersTLS(name string, callers []spiffeid.ID) (*tls.Config, error) {
	if len(callers) == 0 {
		d.log.Warn(name+" serves without authenticating its callers: any process that reaches it can ask; listen on loopback only, or set allowed_callers", "frontend", name)
		return nil, nil
	}
	if d.svids == nil {
		return nil, fmt.Errorf("%s.allowed_callers needs the verifier's own SVID", name)
	}
	return tlsconfig.MTLSServerConfig(d.svids, d.v.Auth.X509Bundles(), tlsconfig.AuthorizeOneOf(callers...)), nil
}

func (d *Daemon) httpServer(l net.Listener, h http.Handler) *http.Server {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: verifier.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	d.serve(func() error { return s.Serve(l) }, s.Shutdown)
	return s
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
	d.rewatch() // first, so that a change made while it loads is seen
	diags := d.store.Reload(d.cfg.PolicyDir)
	if diags.HasErrors() {
		d.metrics.reloads.WithLabelValues("error").Inc()
		d.metrics.policyOK.Set(0)
		d.log.Error("policy reload failed; keeping the last good policy", "dir", d.cfg.PolicyDir, "err", diags.Error(), "digest", d.store.Set().Digest())
		return diags
	}
	d.metrics.reloads.WithLabelValues("ok").Inc()
	d.metrics.policyOK.Set(1)
	d.rewatch() // the new policy's data files
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
	close(d.watching)
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

// watch reports (debounced) changes to the policy directory, its data
// files, and what policy_dir resolves to (see policyWatch).
func (d *Daemon) watch() (<-chan struct{}, error) {
	pw, err := newPolicyWatch(d.cfg.PolicyDir, d.log)
	if err != nil {
		return nil, err
	}
	if err := pw.refresh(d.store.Set().DataFiles()); err != nil {
		pw.w.Close()
		return nil, err
	}
	d.pwatch.Store(pw)
	d.closers = append(d.closers, pw.w.Close)
	out := make(chan struct{}, 1)
	go pw.run(out)
	return out, nil
}

// rewatch moves the watch to what policy_dir resolves to now and to the
// current policy's data files.
func (d *Daemon) rewatch() {
	if pw := d.pwatch.Load(); pw != nil {
		pw.refresh(d.store.Set().DataFiles())
	}
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
		if d.view != nil && !d.view.Fresh(time.Now()) {
			http.Error(w, "the view of live tasks is older than max_staleness (or there is none yet)", http.StatusServiceUnavailable)
			return
		}
		if d.audit != nil {
			if err := d.audit.Healthy(); err != nil {
				http.Error(w, "decision log cannot take records: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		if d.mcp != nil {
			if err := d.mcp.Healthy(); err != nil {
				http.Error(w, "mcp gateway: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintf(w, "ready: policy %s\n", d.store.Set().Digest())
	})
	return mux
}

// checkResponse is the check API's JSON answer.
type checkResponse struct {
	Allow    bool     `json:"allow"`
	Peer     string   `json:"peer,omitempty"`
	Rules    []string `json:"rules,omitempty"`
	Reason   string   `json:"reason"`
	Errors   []string `json:"errors,omitempty"`
	Policy   string   `json:"policy_digest,omitempty"`
	DenyCode string   `json:"deny_code,omitempty"`
	// Receipt is the reference of the allowed decision's durable audit
	// record (audit.Ref), with receipts on.
	Receipt string `json:"receipt,omitempty"`
}

// maxCheckBody bounds a check API request: a PEM chain (at most 64 KiB)
// and an action.
const maxCheckBody = 128 << 10

// checkAPI serves POST /v1/check: credential + action → decision (JSON).
// A decision is 200 whether allowed or not ("allow": false with the
// reason); a malformed request is 400, an oversized one 413.
func (d *Daemon) checkAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxCheckBody+1))
		if err != nil {
			http.Error(w, "bad check request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxCheckBody {
			http.Error(w, fmt.Sprintf("check request over %d bytes", maxCheckBody), http.StatusRequestEntityTooLarge)
			return
		}
		q, err := parseCheckRequest(body)
		if err != nil {
			http.Error(w, "bad check request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			if id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0]); err == nil {
				q.Caller = id.String()
			}
		}
		writeJSON(w, d.check(r.Context(), q))
	})
	if z := d.cfg.AuthZEN; z != nil {
		(&verifier.AuthZEN{V: d.v, SubjectTypes: z.SubjectTypes, MaxBatch: z.MaxBatch, PDP: z.PDP, CertificatesFromAnyCaller: z.CertificatesFromAnyCaller}).Register(mux)
	}
	return mux
}

func (d *Daemon) check(ctx context.Context, q *verifier.Query) checkResponse {
	res := d.v.Decide(ctx, q)
	resp := checkResponse{Allow: res.Allowed(), Rules: res.Decision.RuleStrings(), Reason: res.Decision.Reason, Errors: res.Decision.Errors, Policy: res.Decision.PolicyDigest}
	if res.Authenticated {
		resp.Peer = res.Peer.ID().String()
	}
	resp.Receipt = res.Decision.Receipt.String()
	if !res.Allowed() && res.Outcome != verifier.Forbidden {
		resp.DenyCode = res.Code
	}
	return resp
}

// parseCheckRequest reads {"certificate"|"jwt", "action": {"kind",
// "method", "path", "name"}, "request": {…}} strictly: duplicate or
// case-variant keys and unknown keys are refused. "request", optional, is
// the HTTP request the service received, for the agent's signature; its
// method and path must be the http action's. The capitalised action keys of the first
// release ("Kind", "Method", "Path", "Name") are still read.
func parseCheckRequest(body []byte) (*verifier.Query, error) {
	v, err := strictjson.Decode(body, 8, 3)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	q := &verifier.Query{Frontend: verifier.FrontendCheckAPI}
	for k, v := range obj {
		switch k {
		case "certificate", "jwt":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%q must be a string", k)
			}
			if q.Credential.Kind != verifier.CredentialNone {
				return nil, errors.New(`give one of "certificate" and "jwt"`)
			}
			q.Credential = verifier.Credential{Kind: verifier.CredentialPEM, Value: s}
			if k == "jwt" {
				q.Credential.Kind = verifier.CredentialJWT
			}
		case "action":
			a, ok := v.(map[string]any)
			if !ok {
				return nil, errors.New(`"action" must be an object`)
			}
			for ak, av := range a {
				s, ok := av.(string)
				if !ok {
					return nil, fmt.Errorf("action.%s must be a string", ak)
				}
				switch strings.ToLower(ak) {
				case "kind":
					q.Action.Kind = s
				case "method":
					q.Action.Method = s
				case "path":
					q.Action.Path = s
				case "name":
					q.Action.Name = s
				default:
					return nil, fmt.Errorf("unknown key action.%s (want kind, method, path, name)", ak)
				}
				if ak != strings.ToLower(ak) && ak != strings.ToUpper(ak[:1])+ak[1:] {
					return nil, fmt.Errorf("action key %q: write %q", ak, strings.ToLower(ak))
				}
			}
		case "request":
			s, err := parseSignedRequest(v)
			if err != nil {
				return nil, err
			}
			q.Signed = s
			// The request the service received: its headers are decided
			// on (method overrides, header names, policy conditions) as
			// the middleware decides them.
			q.Request = verifier.Request{Headers: s.Message.Header}
		default:
			return nil, fmt.Errorf("unknown key %q (want certificate, jwt, action, request)", k)
		}
	}
	if s := q.Signed; s != nil && q.Action.Kind == policies.KindHTTP {
		if p := targetPath(s.Message.TargetURI); s.Message.Method != q.Action.Method || p != q.Action.Path {
			return nil, fmt.Errorf("action %s %s is not the request's %s %s", q.Action.Method, q.Action.Path, s.Message.Method, p)
		}
	}
	return q, nil
}

// parseSignedRequest reads "request": {"method", "target_uri", "headers":
// {name: value}, "body": base64}: the HTTP request a service received, for
// the signature stage (the agent's RFC 9421 signature in its headers).
func parseSignedRequest(v any) (*verifier.SignedRequest, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New(`"request" must be an object`)
	}
	s := &verifier.SignedRequest{Message: httpsig.Message{Header: http.Header{}}, BodyKnown: true}
	for k, v := range obj {
		switch k {
		case "method", "target_uri", "body":
			str, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("request.%s must be a string", k)
			}
			switch k {
			case "method":
				s.Message.Method = str
			case "target_uri":
				s.Message.TargetURI = str
			case "body":
				b, err := base64.StdEncoding.DecodeString(str)
				if err != nil {
					return nil, fmt.Errorf("request.body: %w", err)
				}
				s.Body = b
			}
		case "headers":
			h, ok := v.(map[string]any)
			if !ok {
				return nil, errors.New("request.headers must be an object of strings")
			}
			for name, val := range h {
				str, ok := val.(string)
				if !ok {
					return nil, fmt.Errorf("request.headers.%s must be a string", name)
				}
				s.Message.Header.Add(name, str)
			}
		default:
			return nil, fmt.Errorf("unknown key request.%s (want method, target_uri, headers, body)", k)
		}
	}
	if s.Message.Method == "" || !strings.Contains(s.Message.TargetURI, "://") {
		return nil, errors.New("request needs method and an absolute target_uri")
	}
	return s, nil
}

// targetPath is the path of an absolute URI, without the query.
func targetPath(uri string) string {
	_, rest, _ := strings.Cut(uri, "://")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		return "/"
	}
	p, _, _ := strings.Cut(rest[i:], "?")
	if p == "" {
		return "/"
	}
	return p
}

// observe counts one decision of any front-end.
func (d *Daemon) observe(frontend string, r verifier.Result, elapsed time.Duration) {
	rule := ""
	if len(r.Decision.Rules) > 0 {
		rule = r.Decision.Rules[0].Name
	}
	word := "deny"
	if r.Allowed() {
		word = "allow"
	}
	d.metrics.decisions.WithLabelValues(frontend, word, rule).Inc()
	if r.Code != "" {
		d.metrics.refusals.WithLabelValues(frontend, r.Code).Inc()
	}
	d.metrics.latency.WithLabelValues(frontend).Observe(elapsed.Seconds())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
