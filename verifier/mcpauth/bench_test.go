package mcpauth_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

// BenchmarkMiddleware is the middleware's own cost: the pipeline
// (cached JWT-SVID authentication, arguments decoded for the condition,
// policy, audit append with the default durability) around a handler
// that does nothing; p50-ns is the median of single calls.
//
//	go test -run '^$' -bench Middleware -benchmem ./verifier/mcpauth/
func BenchmarkMiddleware(b *testing.B) {
	b.Run("policy=examples-filesystem", func(b *testing.B) { benchMiddleware(b, nil) })
	simple, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(`
rule "read" {
  effect = "allow"
  peer { scopes_all = ["fs:read"] }
  action {
    mcp { tools = ["read_file", "list_directory"] }
  }
}
rule "write" {
  effect = "allow"
  peer { scopes_all = ["fs:write"] }
  action {
    mcp { tools = ["write_file"] }
  }
  condition = startswith(action.arguments.path, "/srv/agents/${peer.task}/")
}`)}})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	b.Run("policy=one-condition", func(b *testing.B) { benchMiddleware(b, simple) })
}

func benchMiddleware(b *testing.B, set *policies.Set) {
	f := newFixture(b)
	if set != nil {
		f.v.Policy = set
	}
	tok := f.token(b, "T-42", []string{"fs:read", "fs:write"}, resource)
	a, err := mcpauth.New(f.v, mcpauth.Options{Resource: resource,
		Credential: func(context.Context, mcp.Request) (verifier.Credential, bool) { return jwtCred(tok), true }})
	if err != nil {
		b.Fatal(err)
	}
	tools := make([]*mcp.Tool, 100)
	for i := range tools {
		tools[i] = &mcp.Tool{Name: fmt.Sprintf("tool_%03d", i)}
	}
	tools[0].Name, tools[1].Name, tools[2].Name = "read_file", "write_file", "list_directory"
	next := func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method == "tools/list" {
			return &mcp.ListToolsResult{Tools: tools}, nil
		}
		return &mcp.CallToolResult{}, nil
	}
	h := a.Middleware()(next)
	ctx := context.Background()
	list := &mcp.ListToolsRequest{Params: &mcp.ListToolsParams{}}
	if res, err := h(ctx, "tools/list", list); err != nil || len(res.(*mcp.ListToolsResult).Tools) != 3 {
		b.Fatalf("list: %v %v", res, err)
	}
	run := func(b *testing.B, method string, req mcp.Request) {
		if _, err := h(ctx, method, req); err != nil {
			b.Fatal(err)
		}
		samples := make([]time.Duration, 0, 4096)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if i%64 == 0 && len(samples) < cap(samples) {
				t := time.Now()
				h(ctx, method, req)
				samples = append(samples, time.Since(t))
				continue
			}
			h(ctx, method, req)
		}
		b.StopTimer()
		slices.Sort(samples)
		if len(samples) > 0 {
			b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
		}
	}
	b.Run("tools-call", func(b *testing.B) {
		run(b, "tools/call", &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: "read_file", Arguments: []byte(`{"path":"/srv/shared/notes.md"}`)}})
	})
	b.Run("tools-call-write", func(b *testing.B) {
		run(b, "tools/call", &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: "write_file",
			Arguments: []byte(`{"path":"/srv/agents/T-42/out.md","content":"a short note"}`)}})
	})
	b.Run("tools-list-100", func(b *testing.B) {
		run(b, "tools/list", list)
	})
}
