package mcpauth_test

import (
	"context"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

// TestResourceURIDotSegmentsRealServer (R4): a go-sdk server whose
// template is file:///{+path} and whose handler reads url.Parse(uri).Path
// after path.Clean (confined to its root), behind mcpauth with the shipped
// examples/mcp/filesystem policy (resources = ["file:///srv/**"]).
// file:///etc/shadow is refused by the policy; "..", "%2e%2e", "//" and
// encoded forms that the handler resolves to /etc/shadow are refused as
// bad_request before the handler runs (resources/read and a completion
// ref), and audited, and resources/list does not show them; the
// canonical URI under /srv is served. (go-sdk's
// client subscribes with subscriptions/listen from protocol 2026-07-28 on;
// resources/subscribe is covered by TestParseMCPResourceURICanonical and
// the gateway's test.)
func TestResourceURIDotSegmentsRealServer(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "srv"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "srv", "notes.md"), []byte("notes"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "shadow"), []byte("SECRET-SHADOW"), 0o644)

	var reached []string
	srv := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, &mcp.ServerOptions{
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			reached = append(reached, "complete "+req.Params.Ref.URI)
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{"shadow"}}}, nil
		},
	})
	srv.AddResourceTemplate(&mcp.ResourceTemplate{Name: "files", URITemplate: "file:///{+path}"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			reached = append(reached, "read "+req.Params.URI)
			u, err := url.Parse(req.Params.URI)
			if err != nil {
				return nil, err
			}
			b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path.Clean("/"+u.Path))))
			if err != nil {
				return nil, mcp.ResourceNotFoundError(req.Params.URI)
			}
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: string(b)}}}, nil
		})
	for _, uri := range []string{"file:///srv/notes.md", "file:///srv/../etc/shadow"} {
		srv.AddResource(&mcp.Resource{Name: uri, URI: uri}, readResource)
	}
	cred := jwtCred(f.token(t, "T-42", []string{"fs:read"}, resource))
	a, err := mcpauth.New(f.v, mcpauth.Options{Resource: resource,
		Credential: func(context.Context, mcp.Request) (verifier.Credential, bool) { return cred, true }})
	if err != nil {
		t.Fatal(err)
	}
	a.Install(srv)
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	// resources/list shows no URI that reading would refuse.
	lr, err := cs.ListResources(ctx, nil)
	if err != nil || len(lr.Resources) != 1 || lr.Resources[0].URI != "file:///srv/notes.md" {
		t.Fatalf("resources/list: %+v %v", lr, err)
	}
	res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///srv/notes.md"})
	if err != nil || res.Contents[0].Text != "x" {
		t.Fatalf("file:///srv/notes.md: %v %v", res, err)
	}
	_, err = cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///etc/shadow"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")
	reached = nil
	dotted := []string{"file:///srv/../etc/shadow", "file:///srv/%2e%2e/etc/shadow", "file:///srv/x/../../etc/shadow",
		"file:///srv/.%2E/etc/shadow", "file:///srv//../etc/shadow", "file:///srv/..%2Fetc/shadow"}
	for _, uri := range dotted {
		res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		if err == nil {
			t.Errorf("resources/read %s: served %q", uri, res.Contents[0].Text)
			continue
		}
		wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", "resource URI")
	}
	_, err = cs.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: "file:///srv/../etc/{name}"},
		Argument: mcp.CompleteParamsArgument{Name: "name", Value: "sh"}})
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", "resource URI")
	if len(reached) != 0 {
		t.Errorf("handlers reached: %q", reached)
	}
	// Each refusal is audited, as bad_request, with the URI as sent.
	n := 0
	for _, r := range f.records(t) {
		if r.Decision == "deny" && strings.Contains(r.Reason, "bad_request") && strings.Contains(r.Action.Name, "etc") {
			n++
		}
	}
	if want := len(dotted) + 1; n != want {
		t.Errorf("audited bad_request refusals of the dotted URIs: %d, want %d", n, want)
	}
}
