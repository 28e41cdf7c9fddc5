package npmtest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/npmtest"
)

// TestClientAgainstServerEverything installs the pinned npm packages and
// runs the TypeScript client of examples/mcp/client against the published
// @modelcontextprotocol/server-everything over Streamable HTTP (no
// agentid in between): it lists the tools, calls echo and get-sum, and
// prints the tool error of an unknown tool as a result.
func TestClientAgainstServerEverything(t *testing.T) {
	js := npmtest.Require(t)
	url := js.StartEverything(t).URL
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, js.Node, js.Client, "--url", url, "list",
		"call", "echo", `{"message":"hello"}`, "call", "get-sum", `{"a":2,"b":3}`, "call", "no-such-tool").Output()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), out)
	}
	text := func(l map[string]any) string { b, _ := json.Marshal(l); return string(b) }
	if s := text(lines[0]); !strings.Contains(s, `"name":"mcp-servers/everything"`) || !strings.Contains(s, `"protocolVersion"`) {
		t.Errorf("connect: %s", s)
	}
	if s := text(lines[1]); !strings.Contains(s, `"echo"`) || !strings.Contains(s, `"get-sum"`) {
		t.Errorf("list: %s", s)
	}
	if s := text(lines[2]); !strings.Contains(s, "Echo: hello") {
		t.Errorf("echo: %s", s)
	}
	if s := text(lines[3]); !strings.Contains(s, "The sum of 2 and 3 is 5.") {
		t.Errorf("get-sum: %s", s)
	}
	if s := text(lines[4]); !strings.Contains(s, `"isError":true`) || !strings.Contains(s, "no-such-tool not found") {
		t.Errorf("unknown tool: %s", s)
	}
	t.Logf("TypeScript client against server-everything:\n%s", out)
}
