package docscheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/verifier/daemon"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

type snippet struct {
	file string
	line int
	src  string
}

var fence = regexp.MustCompile("(?m)^```hcl\\s*$")

func snippets(t *testing.T) []snippet {
	t.Helper()
	root := filepath.Join("..", "..")
	var files []string
	files = append(files, filepath.Join(root, "README.md"))
	for _, pat := range []string{"docs/*.md", "examples/*.md", "examples/*/*.md"} {
		m, _ := filepath.Glob(filepath.Join(root, pat))
		files = append(files, m...)
	}
	var out []snippet
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, loc := range fence.FindAllStringIndex(text, -1) {
			rest := text[loc[1]:]
			end := strings.Index(rest, "\n```")
			if end < 0 {
				t.Fatalf("%s: unterminated hcl block", f)
			}
			out = append(out, snippet{file: f, line: strings.Count(text[:loc[1]], "\n") + 2, src: rest[:end+1]})
		}
	}
	if len(out) < 5 {
		t.Fatalf("found only %d HCL snippets: is the walk broken?", len(out))
	}
	return out
}

func TestDocsHCLSnippets(t *testing.T) {
	for _, s := range snippets(t) {
		name := filepath.Base(s.file) + ":" + itoa(s.line)
		t.Run(name, func(t *testing.T) {
			f, diags := hclsyntax.ParseConfig([]byte(s.src), name, hcl.Pos{Line: s.line, Column: 1, Byte: 0})
			if diags.HasErrors() {
				t.Fatalf("%s:%d: not valid HCL: %v\n%s", s.file, s.line, diags, s.src)
			}
			body := f.Body.(*hclsyntax.Body)
			kinds := map[string]bool{}
			for _, b := range body.Blocks {
				kinds[b.Type] = true
			}
			switch {
			case kinds["data"]:
				loadPolicyWithData(t, s)
			case kinds["rule"] || kinds["variable"]:
				loadPolicy(t, s, s.src)
			case len(body.Blocks) == 1 && len(body.Attributes) == 0 && (kinds["action"] || kinds["peer"]) && !strings.Contains(s.src, "certificate"):
				loadPolicy(t, s, "rule \"snippet\" {\n  effect = \"allow\"\n"+s.src+"}\n")
			case kinds["agent"]:
				if _, err := registrar.ParsePolicy([]byte(s.src), name); err != nil {
					t.Fatalf("%s:%d: issuance policy: %v", s.file, s.line, err)
				}
			case body.Attributes["policy_dir"] != nil:
				if _, err := daemon.ParseConfig([]byte(s.src), name); err != nil {
					t.Fatalf("%s:%d: verifier config: %v", s.file, s.line, err)
				}
			}
		})
	}
}

func loadPolicy(t *testing.T, s snippet, src string) {
	t.Helper()
	vars := ""
	if strings.Contains(src, "var.") && !strings.Contains(src, "variable ") {
		for _, m := range regexp.MustCompile(`var\.(\w+)`).FindAllStringSubmatch(src, -1) {
			vars += "variable \"" + m[1] + "\" {\n  value = [\"x\"]\n}\n"
		}
	}
	set, diags := policies.LoadFiles([]policies.File{{Name: "snippet.hcl", Src: []byte(src + vars)}})
	if diags.HasErrors() || set == nil {
		t.Fatalf("%s:%d: policy does not load: %v\n%s", s.file, s.line, diags, src)
	}
}

// loadPolicyWithData loads a snippet with data blocks from a directory
// where each data file exists, holding an empty object.
func loadPolicyWithData(t *testing.T, s snippet) {
	t.Helper()
	dir := t.TempDir()
	for _, m := range regexp.MustCompile(`(?m)^\s*file\s*=\s*"([^"]+)"`).FindAllStringSubmatch(s.src, -1) {
		p := filepath.Join(dir, m[1])
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "snippet.hcl"), []byte(s.src), 0o600); err != nil {
		t.Fatal(err)
	}
	if set, diags := policies.Load(dir); diags.HasErrors() || set == nil {
		t.Fatalf("%s:%d: policy does not load: %v\n%s", s.file, s.line, diags, s.src)
	}
}

func itoa(n int) string {
	b := []byte{}
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
