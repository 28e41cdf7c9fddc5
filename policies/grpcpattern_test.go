package policies_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
)

func grpcPolicy(pattern string) string {
	return `rule "kb" {
  effect = "allow"
  action {
    grpc { methods = ["/kb.v1.KB/*"] }
  }
}
rule "no-delete" {
  effect = "deny"
  action {
    grpc {
      methods = [` + hclString(pattern) + `]
    }
  }
}
`
}

// TestGRPCMethodPatterns: the verifier decides a gRPC method only when
// spelled as protobuf names one (letters, digits, "_", "."), so a
// grpc { methods } pattern or a test case's "grpc /…" action holding
// another byte — "/kb.v1.KB/%44elete", a query, a "-" — would never match
// (a deny that never applies): it is an error naming file:line:col.
func TestGRPCMethodPatterns(t *testing.T) {
	for _, p := range []string{"/kb.v1.KB/%44elete", "/kb.v1.KB/Delete?x=1", "/kb.v1.KB/Delete#x", "/kb-v1.KB/Delete", "/kb.v1.KB/Dél", "/kb.v1.KB/De lete"} {
		set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(grpcPolicy(p))}})
		if set != nil || !diags.HasErrors() {
			t.Errorf("%q loads (diagnostics: %v): a deny with it never matches a decided method", p, diags)
			continue
		}
		got := formatDiags(diags)
		want := "p.hcl:11:18: error: Non-canonical gRPC method pattern: The pattern " + fmt.Sprintf("%q", p) + ` of "methods" holds `
		if len(diags) != 1 || !strings.HasPrefix(got, want) {
			t.Errorf("diagnostics:\n%s\nwant one starting %q", got, want)
		}
		if _, err := policies.ParseAction("grpc " + p); err == nil {
			t.Errorf("ParseAction(grpc %s): no error", p)
		}
	}
	for _, p := range []string{"/kb.v1.KB/Delete", "/kb.v1.*/Delete", "/**", "**", "/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/_p._Q/_m"} {
		if set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(grpcPolicy(p))}}); set == nil || diags.HasErrors() {
			t.Errorf("%q: %s", p, formatDiags(diags))
		}
	}
	if _, err := policies.ParseAction("grpc /kb.v1.KB/Delete"); err != nil {
		t.Error(err)
	}
}
