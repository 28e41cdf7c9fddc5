package credentialcomposer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestConfigure(t *testing.T) {
	h := serve(t)
	tests := []struct {
		name     string
		hcl      string
		code     codes.Code
		contains string
	}{
		{name: "good", hcl: `server_api_socket = "/run/spire/api.sock"` + "\n" + `cache_ttl = "10s"` + "\n" + `trust_domains = ["partner.example"]`},
		{name: "empty", hcl: ""},
		{name: "bad value", hcl: `cache_ttl = "soon"`, code: codes.InvalidArgument,
			contains: `composer: configuration: 1:13: Invalid cache_ttl; "soon" is not a duration`},
		{name: "unknown key", hcl: `extention_oid = "1.2.3"`, code: codes.InvalidArgument,
			contains: `An argument named "extention_oid" is not expected here. Did you mean "extension_oid"?`},
		{name: "not HCL", hcl: `{"cache_ttl": "5s"}`, code: codes.InvalidArgument, contains: "composer: configuration:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.configure(tt.hcl)
			if tt.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tt.code, tt.contains)
		})
	}
	t.Run("validate", func(t *testing.T) {
		resp, err := h.cfg.Validate(context.Background(), &configv1.ValidateRequest{
			CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "example.org"},
			HclConfiguration:  `cache_size = -1`,
		})
		if err != nil || resp.Valid || len(resp.Notes) != 1 || !strings.Contains(resp.Notes[0], "Invalid cache_size") {
			t.Fatalf("Validate = %v, %v", resp, err)
		}
	})
}

func TestReconfigureSwitchesSocket(t *testing.T) {
	h := serve(t)
	h.mustConfigure(t, "")
	other := serve(t).fe // a second fake Entry API
	other.Add(entryOf(rootClaims("T-1")))
	id := taskID("planner", "T-1").String()
	req := &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{SpiffeId: id, Attributes: x509Attributes()}
	if _, err := h.cc.ComposeWorkloadX509SVID(context.Background(), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("before the switch: %v, want PermissionDenied (no entry on the first API)", err)
	}
	if err := h.configure(fmt.Sprintf("server_api_socket = %q", other.SocketPath)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cc.ComposeWorkloadX509SVID(context.Background(), req); err != nil {
		t.Fatalf("after the switch: %v", err)
	}
	if h.fe.ListCalls.Load() != 1 || other.ListCalls.Load() != 1 {
		t.Fatalf("ListEntries calls: first API %d, second %d; want 1 and 1", h.fe.ListCalls.Load(), other.ListCalls.Load())
	}
}

func TestComposeWorkloadX509SVID(t *testing.T) {
	h := serve(t)
	h.mustConfigure(t, "")
	want := delegatedClaims("T-2")
	h.fe.Add(entryOf(want))
	in := x509Attributes()
	resp, err := h.cc.ComposeWorkloadX509SVID(context.Background(), &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{
		SpiffeId: taskID("researcher", "T-2").String(), Attributes: cloneX509(in), PublicKey: []byte("key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetAttributes()
	if !proto.Equal(got.Subject, in.Subject) || len(got.ExtraExtensions) != 2 || !proto.Equal(got.ExtraExtensions[0], in.ExtraExtensions[0]) {
		t.Fatalf("attributes = %v, want the input plus one extension", got)
	}
	ext := got.ExtraExtensions[1]
	if ext.Oid != svid.DefaultOID.String() || ext.Critical {
		t.Fatalf("extension %s critical=%v", ext.Oid, ext.Critical)
	}
	claims, err := svid.DecodeExtension(toPKIX(t, ext))
	if err != nil || !claims.Equal(want) {
		t.Fatalf("DecodeExtension = %+v, %v; want %+v", claims, err, want)
	}
}

func TestComposeWorkloadX509SVIDReplacesSameOID(t *testing.T) {
	h := serve(t)
	h.mustConfigure(t, `extension_oid = "1.2.3.4"`)
	h.fe.Add(entryOf(rootClaims("T-1")))
	resp, err := h.cc.ComposeWorkloadX509SVID(context.Background(), &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{
		SpiffeId: taskID("planner", "T-1").String(), Attributes: x509Attributes(),
	})
	if err != nil {
		t.Fatal(err)
	}
	exts := resp.GetAttributes().GetExtraExtensions()
	if len(exts) != 1 || exts[0].Oid != "1.2.3.4" {
		t.Fatalf("extensions = %v, want one 1.2.3.4", exts)
	}
	if c, err := svid.DecodeExtension(toPKIX(t, exts[0])); err != nil || c.Task != "T-1" {
		t.Fatalf("DecodeExtension = %+v, %v", c, err)
	}
}

func TestComposeWorkloadJWTSVID(t *testing.T) {
	tests := []struct {
		name   string
		claims svid.Claims
		extra  map[string]any
	}{
		{name: "delegated", claims: delegatedClaims("T-2")},
		{name: "root drops a stale act", claims: rootClaims("T-1"), extra: map[string]any{"act": map[string]any{"sub": "spiffe://x/y"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := serve(t)
			h.mustConfigure(t, "")
			h.fe.Add(entryOf(tt.claims))
			id := taskID(tt.claims.Agent, tt.claims.Task)
			in := jwtAttributes(t, id, tt.extra)
			resp, err := h.cc.ComposeWorkloadJWTSVID(context.Background(), &credentialcomposerv1.ComposeWorkloadJWTSVIDRequest{
				SpiffeId: id.String(), Attributes: in,
			})
			if err != nil {
				t.Fatal(err)
			}
			m := resp.GetAttributes().GetClaims().AsMap()
			for _, k := range []string{"sub", "aud", "exp", "iat", "tenant"} {
				if fmt.Sprint(m[k]) != fmt.Sprint(in.Claims.AsMap()[k]) {
					t.Errorf("claim %q = %v, want %v kept", k, m[k], in.Claims.AsMap()[k])
				}
			}
			got, found, err := svid.FromJWTClaims(m, svid.WithTime(testNow))
			if err != nil || !found || !got.Equal(tt.claims) {
				t.Fatalf("FromJWTClaims = %+v, %v, %v; want %+v", got, found, err, tt.claims)
			}
		})
	}
}

func TestNonTaskUnchanged(t *testing.T) {
	h := serve(t)
	ctx := context.Background()
	check := func(t *testing.T) {
		if _, err := h.cc.ComposeServerX509CA(ctx, &credentialcomposerv1.ComposeServerX509CARequest{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("ComposeServerX509CA: %v, want Unimplemented (keep defaults)", err)
		}
		if _, err := h.cc.ComposeServerX509SVID(ctx, &credentialcomposerv1.ComposeServerX509SVIDRequest{Attributes: x509Attributes()}); status.Code(err) != codes.Unimplemented {
			t.Errorf("ComposeServerX509SVID: %v, want Unimplemented", err)
		}
		if _, err := h.cc.ComposeAgentX509SVID(ctx, &credentialcomposerv1.ComposeAgentX509SVIDRequest{
			SpiffeId: "spiffe://example.org/spire/agent/join_token/node1", Attributes: x509Attributes()}); status.Code(err) != codes.Unimplemented {
			t.Errorf("ComposeAgentX509SVID: %v, want Unimplemented", err)
		}
		for _, id := range []string{
			"spiffe://example.org/for/health/check/only",
			"spiffe://example.org/workload/me",
			"spiffe://example.org/agent/planner",
			"spiffe://example.org/spire/server",
		} {
			in := x509Attributes()
			resp, err := h.cc.ComposeWorkloadX509SVID(ctx, &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{SpiffeId: id, Attributes: cloneX509(in)})
			if err != nil || !proto.Equal(resp.GetAttributes(), in) {
				t.Errorf("X.509 %s: %v, %v; want unchanged", id, resp, err)
			}
			jin := jwtAttributes(t, mustID(id), nil)
			jresp, err := h.cc.ComposeWorkloadJWTSVID(ctx, &credentialcomposerv1.ComposeWorkloadJWTSVIDRequest{SpiffeId: id,
				Attributes: proto.Clone(jin).(*credentialcomposerv1.JWTSVIDAttributes)})
			if err != nil || !proto.Equal(jresp.GetAttributes(), jin) {
				t.Errorf("JWT %s: %v, %v; want unchanged", id, jresp, err)
			}
		}
	}
	t.Run("before Configure", check)
	h.mustConfigure(t, "")
	h.fe.Fail(status.Error(codes.Unavailable, "down")) // must not matter
	t.Run("configured", check)
	if n := h.fe.ListCalls.Load(); n != 0 {
		t.Fatalf("ListEntries called %d times for non-task IDs", n)
	}
}

func TestTaskRefused(t *testing.T) {
	ctx := context.Background()
	id := taskID("planner", "T-404").String()
	x509Req := &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{SpiffeId: id, Attributes: x509Attributes()}
	jwtReq := func(t *testing.T) *credentialcomposerv1.ComposeWorkloadJWTSVIDRequest {
		return &credentialcomposerv1.ComposeWorkloadJWTSVIDRequest{SpiffeId: id, Attributes: jwtAttributes(t, mustID(id), nil)}
	}

	t.Run("not configured", func(t *testing.T) {
		h := serve(t)
		_, err := h.cc.ComposeWorkloadX509SVID(ctx, x509Req)
		wantCode(t, err, codes.FailedPrecondition, "not configured")
	})
	t.Run("unknown task", func(t *testing.T) {
		h := serve(t)
		h.mustConfigure(t, "")
		_, err := h.cc.ComposeWorkloadX509SVID(ctx, x509Req)
		wantCode(t, err, codes.PermissionDenied,
			"composer: spiffe://example.org/agent/planner/task/T-404: no_entry: no registration entry (never created or revoked)")
		_, err = h.cc.ComposeWorkloadJWTSVID(ctx, jwtReq(t))
		wantCode(t, err, codes.PermissionDenied, "no_entry")
		logs := h.log.String()
		if !strings.Contains(logs, "Refusing to sign task SVID") || !strings.Contains(logs, "spiffe_id="+id) || !strings.Contains(logs, "reason=no_entry") {
			t.Fatalf("log does not name the ID and reason:\n%s", logs)
		}
	})
	t.Run("expired", func(t *testing.T) {
		h := serve(t)
		h.mustConfigure(t, "")
		c := rootClaims("T-404")
		c.Deadline = testNow
		h.fe.Add(entryOf(c))
		_, err := h.cc.ComposeWorkloadX509SVID(ctx, x509Req)
		wantCode(t, err, codes.PermissionDenied, "expired")
	})
	t.Run("API failing", func(t *testing.T) {
		h := serve(t)
		h.mustConfigure(t, "")
		h.fe.Add(entryOf(rootClaims("T-404")))
		h.fe.Fail(status.Error(codes.Internal, "datastore down"))
		_, err := h.cc.ComposeWorkloadX509SVID(ctx, x509Req)
		wantCode(t, err, codes.Unavailable, "lookup_failed: reading the entry from the server API: rpc error: code = Internal desc = datastore down")
		_, err = h.cc.ComposeWorkloadJWTSVID(ctx, jwtReq(t))
		wantCode(t, err, codes.Unavailable, "lookup_failed")
		h.fe.Fail(nil)
		if _, err := h.cc.ComposeWorkloadX509SVID(ctx, x509Req); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	})
	t.Run("no server on the socket", func(t *testing.T) {
		h := serve(t)
		dir, err := os.MkdirTemp("", "cc")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if err := h.configure(fmt.Sprintf("server_api_socket = %q", filepath.Join(dir, "api.sock"))); err != nil {
			t.Fatal(err)
		}
		_, err = h.cc.ComposeWorkloadX509SVID(ctx, x509Req)
		wantCode(t, err, codes.Unavailable, "lookup_failed")
		in := x509Attributes()
		resp, err := h.cc.ComposeWorkloadX509SVID(ctx, &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{
			SpiffeId: "spiffe://example.org/for/health/check/only", Attributes: cloneX509(in)})
		if err != nil || !proto.Equal(resp.GetAttributes(), in) {
			t.Fatalf("health check: %v, %v; want unchanged", resp, err)
		}
	})
	t.Run("missing attributes", func(t *testing.T) {
		h := serve(t)
		h.mustConfigure(t, "")
		_, err := h.cc.ComposeWorkloadX509SVID(ctx, &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{SpiffeId: id})
		wantCode(t, err, codes.InvalidArgument, "request missing attributes")
		_, err = h.cc.ComposeWorkloadJWTSVID(ctx, &credentialcomposerv1.ComposeWorkloadJWTSVIDRequest{SpiffeId: id})
		wantCode(t, err, codes.InvalidArgument, "request missing JWT claims")
		_, err = h.cc.ComposeWorkloadX509SVID(ctx, &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{SpiffeId: "not an id"})
		wantCode(t, err, codes.InvalidArgument, "malformed SPIFFE ID")
	})
}

// TestConcurrentComposeAndConfigure runs signings while Configure swaps the
// configuration (SIGUSR1); run with -race.
func TestConcurrentComposeAndConfigure(t *testing.T) {
	h := serve(t)
	h.mustConfigure(t, "")
	for i := range 8 {
		h.fe.Add(entryOf(rootClaims(fmt.Sprintf("T-%d", i))))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				id := taskID("planner", fmt.Sprintf("T-%d", (g+i)%8)).String()
				resp, err := h.cc.ComposeWorkloadX509SVID(ctx, &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{SpiffeId: id, Attributes: x509Attributes()})
				if err == nil && len(resp.GetAttributes().GetExtraExtensions()) != 2 {
					err = fmt.Errorf("%s: %d extensions", id, len(resp.GetAttributes().GetExtraExtensions()))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 10 {
		h.mustConfigure(t, fmt.Sprintf(`cache_ttl = "%ds"`, i+1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestComposeWorkloadJWTSVIDCapsExp: a JWT-SVID of a task never outlives
// the task: its exp is lowered to the deadline when SPIRE's TTL would run
// past it (a non-agentid service checks exp and nothing else), and kept
// when it ends before.
func TestComposeWorkloadJWTSVIDCapsExp(t *testing.T) {
	h := serve(t)
	h.mustConfigure(t, "")
	c := rootClaims("T-1")
	c.Deadline = testNow.Add(2 * time.Minute) // SPIRE's exp is testNow+5m
	h.fe.Add(entryOf(c))
	c2 := rootClaims("T-2") // deadline testNow+1h: exp testNow+5m stays
	h.fe.Add(entryOf(c2))
	for _, tt := range []struct {
		task string
		exp  time.Time
	}{{"T-1", c.Deadline}, {"T-2", testNow.Add(5 * time.Minute)}} {
		id := taskID("planner", tt.task)
		resp, err := h.cc.ComposeWorkloadJWTSVID(context.Background(), &credentialcomposerv1.ComposeWorkloadJWTSVIDRequest{
			SpiffeId: id.String(), Attributes: jwtAttributes(t, id, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if exp := resp.GetAttributes().GetClaims().GetFields()["exp"].GetNumberValue(); int64(exp) != tt.exp.Unix() {
			t.Errorf("%s: exp %v, want %d (%s)", tt.task, exp, tt.exp.Unix(), tt.exp)
		}
	}
}
