package policies_test

import (
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
)

// TestNonCanonicalResourcePatternRefused: as with HTTP paths, an MCP
// resource pattern must be in the one spelling the verifier decides
// (verifier.CheckResourceURI), else a deny written with it never matches:
// "file:///srv/my docs/**" against the URI file:///srv/my%20docs/x. A
// load error names the canonical spelling where there is one.
func TestNonCanonicalResourcePatternRefused(t *testing.T) {
	for pat, want := range map[string]string{
		`file:///srv/my docs/**`:        `file:///srv/my%20docs/**`,
		`file:///srv/caf%c3%a9/**`:      `file:///srv/caf%C3%A9/**`,
		`file:///srv/a%3Bb`:             `file:///srv/a;b`,
		`file:///srv/%40ops/**`:         `file:///srv/@ops/**`,
		`file:///srv/x/../etc/**`:       `file:///srv/etc/**`,
		`FILE:///srv/**`:                `file:///srv/**`,
		`file://localhost/etc/**`:       `file:///`,
		`file:/etc/**`:                  `file:///`,
		`file:///srv/x?v=1`:             `query`,
		`https://Files.example.org/x/*`: `lower case`,
		`https://files.example.org/a b`: `https://files.example.org/a%20b`,
	} {
		src := `
rule "r" {
  effect = "deny"
  action {
    mcp {
      resources = ["` + pat + `"]
    }
  }
}
`
		_, diags := policies.LoadFiles([]policies.File{{Name: "r.hcl", Src: []byte(src)}})
		if !diags.HasErrors() {
			t.Errorf("%s: loads", pat)
			continue
		}
		if !strings.Contains(diags.Error(), want) || !strings.Contains(diags.Error(), "r.hcl:6,") {
			t.Errorf("%s: %v, want a diagnostic at r.hcl:6 containing %q", pat, diags, want)
		}
	}
	for _, pat := range []string{"file:///srv/**", "file:**", "file://**", "**", "urn:example:*", "demo://resource/*",
		"https://*.example.org/**", "file:///srv/{+path}", "file:///srv/a;b", "file:///srv/a%20b", "notes.md", "mailto:*"} {
		src := `
rule "r" {
  effect = "allow"
  action {
    mcp {
      resources = ["` + pat + `"]
    }
  }
}
`
		if _, diags := policies.LoadFiles([]policies.File{{Name: "r.hcl", Src: []byte(src)}}); diags.HasErrors() {
			t.Errorf("%s: %v", pat, diags)
		}
	}
}
