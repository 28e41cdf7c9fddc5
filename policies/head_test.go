package policies_test

import (
	"testing"

	"github.com/agentid/agentid/policies"
)

// TestHeadIsGet: servers answer HEAD with their GET handler (Go's
// net/http, Express…), so a rule on GET also covers HEAD: a deny on GET
// is not dodged with HEAD, and an allow on GET allows HEAD. A rule that
// names HEAD alone still covers only HEAD.
func TestHeadIsGet(t *testing.T) {
	set, diags := policies.LoadFiles([]policies.File{{Name: "h.hcl", Src: []byte(`
rule "kb" {
  effect = "allow"
  action {
    http {
      paths = ["/kb/**"]
    }
  }
}
rule "no-admin-reads" {
  effect = "deny"
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/admin/**"]
    }
  }
}
rule "docs" {
  effect = "allow"
  action {
    http {
      methods = ["GET"]
      paths   = ["/docs/**"]
    }
  }
}
rule "ping" {
  effect = "allow"
  action {
    http {
      methods = ["HEAD"]
      paths   = ["/ping"]
    }
  }
}
`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, tc := range []struct {
		method, path string
		allow        bool
	}{
		{"GET", "/kb/admin/keys", false},
		{"HEAD", "/kb/admin/keys", false},
		{"POST", "/kb/admin/keys", true},
		{"HEAD", "/docs/a", true},
		{"GET", "/docs/a", true},
		{"HEAD", "/ping", true},
		{"GET", "/ping", false},
	} {
		d := set.Decide(&policies.Input{Action: policies.Action{Kind: policies.KindHTTP, Method: tc.method, Path: tc.path}})
		if d.Allow != tc.allow {
			t.Errorf("%s %s: allow %v (%s), want %v", tc.method, tc.path, d.Allow, d.Reason, tc.allow)
		}
	}
}
