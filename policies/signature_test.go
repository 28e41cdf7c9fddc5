package policies_test

import (
	"testing"

	"github.com/agentid/agentid/policies"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func loadSrc(t *testing.T, files ...string) *policies.Set {
	t.Helper()
	var fs []policies.File
	for i, src := range files {
		fs = append(fs, policies.File{Name: string(rune('a'+i)) + ".hcl", Src: []byte(src)})
	}
	set, diags := policies.LoadFiles(fs)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return set
}

// TestRequireSignature: an allow by a rule with require_signature = true,
// or by any rule of a Set with the top-level require_signature = true,
// says the request must carry a verified agent signature; others do not.
func TestRequireSignature(t *testing.T) {
	const rules = `
rule "pay" {
  effect = "allow"
  require_signature = true
  action {
    http {
      methods = ["POST"]
      paths   = ["/pay"]
    }
  }
}
rule "read" {
  effect = "allow"
  action {
    http {
      methods = ["GET"]
      paths   = ["/**"]
    }
  }
}
`
	in := func(method, path string) *policies.Input {
		return &policies.Input{Peer: policies.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/w")},
			Action: policies.Action{Kind: policies.KindHTTP, Method: method, Path: path}}
	}
	set := loadSrc(t, rules)
	if d := set.Decide(in("POST", "/pay")); !d.Allow || !d.RequireSignature {
		t.Fatalf("pay: %+v", d)
	}
	if d := set.Decide(in("GET", "/x")); !d.Allow || d.RequireSignature {
		t.Fatalf("read: %+v", d)
	}
	global := loadSrc(t, rules, "require_signature = true\n")
	if d := global.Decide(in("GET", "/x")); !d.Allow || !d.RequireSignature {
		t.Fatalf("read with the global setting: %+v", d)
	}
	if d := global.Decide(in("DELETE", "/x")); d.Allow || d.RequireSignature {
		t.Fatalf("a denial requires nothing: %+v", d)
	}
}
