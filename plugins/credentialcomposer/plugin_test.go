package credentialcomposer_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/composer"
	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/plugins/credentialcomposer"
	"github.com/agentid/agentid/svid"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

const testPrompt = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	testNow = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
)

// harness is a plugin served through the SDK's loader, with a fake Entry
// API on a unix socket and a log buffer.
type harness struct {
	cc  *credentialcomposerv1.CredentialComposerPluginClient
	cfg *configv1.ConfigServiceClient
	fe  *fakeentry.Server
	log *syncBuffer
}

func serve(t *testing.T) *harness {
	t.Helper()
	return serveWith(t, composer.WithClock(func() time.Time { return testNow }))
}

// serveWith serves a plugin made with opts.
func serveWith(t *testing.T, opts ...composer.Option) *harness {
	t.Helper()
	h := &harness{
		cc:  new(credentialcomposerv1.CredentialComposerPluginClient),
		cfg: new(configv1.ConfigServiceClient),
		fe:  fakeentry.Start(t),
		log: new(syncBuffer),
	}
	p := credentialcomposer.New(opts...)
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   credentialcomposerv1.CredentialComposerPluginServer(p),
		PluginClient:   h.cc,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{h.cfg},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: h.log, Level: hclog.Debug}),
	})
	return h
}

func (h *harness) configure(hcl string) error {
	_, err := h.cfg.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "example.org"},
		HclConfiguration:  hcl,
	})
	return err
}

// mustConfigure configures the plugin on the harness's fake Entry API.
func (h *harness) mustConfigure(t *testing.T, extra string) {
	t.Helper()
	if err := h.configure(fmt.Sprintf("server_api_socket = %q\n%s", h.fe.SocketPath, extra)); err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func taskID(agent, task string) spiffeid.ID {
	id, err := svid.TaskID(td, agent, task)
	if err != nil {
		panic(err)
	}
	return id
}

func rootClaims(task string) svid.Claims {
	return svid.Claims{V: svid.Version, Agent: "planner", Task: task, Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice",
		Deadline: testNow.Add(time.Hour)}
}

func delegatedClaims(task string) svid.Claims {
	c := rootClaims(task)
	c.Agent = "researcher"
	c.Chain = []string{taskID("planner", "T-1").String()}
	return c
}

func entryOf(c svid.Claims) *types.Entry {
	id := taskID(c.Agent, c.Task)
	e := &types.Entry{
		SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: id.Path()},
		ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: "/spire/agent/join_token/node1"},
		ExpiresAt: c.Deadline.Unix(),
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:1001"}},
	}
	for _, v := range c.Selectors() {
		e.Selectors = append(e.Selectors, &types.Selector{Type: "agentid", Value: v})
	}
	return e
}

// x509Attributes are attributes as SPIRE sends them, with an extension a
// composer earlier in the chain added.
func x509Attributes() *credentialcomposerv1.X509SVIDAttributes {
	return &credentialcomposerv1.X509SVIDAttributes{
		Subject: &credentialcomposerv1.DistinguishedName{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		ExtraExtensions: []*credentialcomposerv1.X509Extension{
			{Oid: "1.2.3.4", Value: []byte{0x05, 0x00}, Critical: false},
		},
	}
}

func jwtAttributes(t *testing.T, id spiffeid.ID, extra map[string]any) *credentialcomposerv1.JWTSVIDAttributes {
	t.Helper()
	m := map[string]any{"sub": id.String(), "aud": []any{"svc"}, "exp": float64(testNow.Add(5 * time.Minute).Unix()),
		"iat": float64(testNow.Unix()), "tenant": "blue"}
	for k, v := range extra {
		m[k] = v
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return &credentialcomposerv1.JWTSVIDAttributes{Claims: s}
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	if !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("error %q does not contain %q", status.Convert(err).Message(), contains)
	}
}

func toPKIX(t *testing.T, e *credentialcomposerv1.X509Extension) pkix.Extension {
	t.Helper()
	oid, err := svid.ParseOID(e.Oid)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oid, Value: e.Value, Critical: e.Critical}
}

func cloneX509(a *credentialcomposerv1.X509SVIDAttributes) *credentialcomposerv1.X509SVIDAttributes {
	return proto.Clone(a).(*credentialcomposerv1.X509SVIDAttributes)
}

func mustID(s string) spiffeid.ID { return spiffeid.RequireFromString(s) }
