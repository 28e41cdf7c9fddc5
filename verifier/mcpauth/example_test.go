package mcpauth_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

const examplePolicy = `
rule "read" {
  effect = "allow"
  peer { scopes_all = ["fs:read"] }
  action {
    mcp { tools = ["read_file"] }
  }
}

rule "write-own-dir" {
  effect = "allow"
  peer { scopes_all = ["fs:write"] }
  action {
    mcp { tools = ["write_file"] }
  }
  condition = startswith(action.arguments.path, "/srv/agents/${peer.task}/")
}
`

// Example puts a go-sdk server behind mcpauth and calls it with the
// go-sdk client, as a task holding fs:read only.
func Example() {
	ctx := context.Background()
	ca := testca.New(&testing.T{}, td, time.Now()) // in production: the SPIRE bundle (workloadapi.X509Source, JWTSource)
	set, _ := policies.LoadFiles([]policies.File{{Name: "fs.hcl", Src: []byte(examplePolicy)}})
	v := &verifier.Verifier{
		Auth:   verifier.NewAuthenticator(verifier.Config{JWTBundles: ca.JWTBundle(), Audiences: []string{"https://files.example.org/mcp"}}),
		Policy: set,
	}

	// The task's JWT-SVID, audience = the server's resource URI. In
	// production it comes from the Workload API (workloadapi.FetchJWTSVID).
	claims := svid.Claims{V: 1, Agent: "researcher", Task: "T-42", Model: "m", Prompt: svid.PromptDigest(nil),
		Scope: []string{"fs:read"}, Principal: "spiffe://example.org/user/alice", Chain: []string{},
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	token := ca.CreateJWTSVID(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42"),
		[]string{"https://files.example.org/mcp"}, claims.JWTClaims())

	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	for _, name := range []string{"read_file", "write_file"} {
		server.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
			})
	}
	a, _ := mcpauth.New(v, mcpauth.Options{Resource: "https://files.example.org/mcp",
		// over HTTP, Handler authenticates each request; over stdio or
		// in memory the session's credential comes from here
		Credential: func(context.Context, mcp.Request) (verifier.Credential, bool) {
			return verifier.Credential{Kind: verifier.CredentialJWT, Value: token}, true
		}})
	a.Install(server)

	ct, st := mcp.NewInMemoryTransports()
	ss, _ := server.Connect(ctx, st, nil)
	defer ss.Close()
	cs, _ := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx, ct, nil)
	defer cs.Close()

	tools, _ := cs.ListTools(ctx, nil)
	for _, t := range tools.Tools {
		fmt.Println("listed:", t.Name)
	}
	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": "/srv/agents/T-42/x"}})
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		fmt.Println(je.Code, je.Message)
	}
	// Output:
	// listed: read_file
	// -32031 agentid: forbidden: no rule allows this request (default deny)
}

// ExampleAuth_Handler serves the server over Streamable HTTP: SPIFFE mTLS
// peers and JWT-SVID bearers, the RFC 9728 metadata beside it.
func ExampleAuth_Handler() {
	ca := testca.New(&testing.T{}, td, time.Now())
	set, _ := policies.LoadFiles([]policies.File{{Name: "fs.hcl", Src: []byte(examplePolicy)}})
	v := &verifier.Verifier{
		Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(),
			Audiences: []string{"https://files.example.org/mcp"}}),
		Policy: set,
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	a, _ := mcpauth.New(v, mcpauth.Options{Resource: "https://files.example.org/mcp", ScopesSupported: []string{"fs:read", "fs:write"}})
	a.Install(server)

	mux := http.NewServeMux()
	mux.Handle("/mcp", a.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)))
	mux.Handle(a.MetadataPath(), a.MetadataHandler())
	serverSVID := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/files"))
	srv := &http.Server{Addr: "127.0.0.1:8443", Handler: mux, TLSConfig: verifier.ServerTLSConfig(serverSVID, ca.X509Bundle())}
	_ = srv // srv.ListenAndServeTLS("", "")

	fmt.Println(a.MetadataPath())
	fmt.Println(a.MetadataURL())
	// Output:
	// /.well-known/oauth-protected-resource/mcp
	// https://files.example.org/.well-known/oauth-protected-resource/mcp
}

// An mTLS peer: its X.509-SVID authenticates every request, no bearer.
func TestHTTPMutualTLS(t *testing.T) {
	f := newFixture(t)
	mux := http.NewServeMux()
	mux.Handle("/mcp", f.a.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.server }, nil)))
	serverID := spiffeid.RequireFromString("spiffe://example.org/files")
	srv := &http.Server{Handler: mux, TLSConfig: verifier.ServerTLSConfig(f.ca.CreateX509SVID(serverID), f.ca.X509Bundle())}
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	c := svid.Claims{V: 1, Agent: "researcher", Task: "T-42", Model: "m", Prompt: svid.PromptDigest(nil),
		Scope: []string{"fs:read"}, Principal: "spiffe://example.org/user/alice", Chain: []string{},
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	ext, err := c.Extension(svid.DefaultOID)
	if err != nil {
		t.Fatal(err)
	}
	peer := f.ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42"), testca.WithExtensions(ext))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(peer, f.ca.X509Bundle(), tlsconfig.AuthorizeID(serverID))}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: "https://" + l.Addr().String() + "/mcp", HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := sorted(toolNames(t, cs)); !slices.Equal(got, []string{"list_directory", "read_file"}) {
		t.Fatalf("tools %q", got)
	}
	if _, err := call(cs, "read_file", map[string]any{"path": "/srv/shared/a"}); err != nil {
		t.Fatal(err)
	}
	_, err = call(cs, "write_file", map[string]any{"path": "/srv/agents/T-42/a"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")
}
