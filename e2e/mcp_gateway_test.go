package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/npmtest"
	"github.com/agentid/agentid/verifier/mcpauth"
)

// TestMCPGatewayOnRealSPIRE: the TypeScript client of examples/mcp/client
// (@modelcontextprotocol/sdk) calls two published MCP servers from npm
// through agentid-verifier's MCP gateway, with the JWT-SVIDs that a
// planner task and the researcher it delegated get from the Workload API:
// @modelcontextprotocol/server-filesystem run by the gateway as a stdio
// child (upstream_command) under examples/mcp/filesystem's policy, and
// @modelcontextprotocol/server-everything over Streamable HTTP (upstream)
// under examples/mcp/everything's. Reads are allowed, denied writes are
// MCP errors naming the deciding rule (and never reach the server: the
// file is not written), the researcher sees fewer tools than the planner,
// and a token minted for one gateway is refused by the other.
func TestMCPGatewayOnRealSPIRE(t *testing.T) {
	js := npmtest.Require(t)
	s := newStack(t)
	root := repoRoot(t)
	for _, dir := range []string{"filesystem", "everything"} {
		s.mustRun("policy", "test", filepath.Join(root, "examples", "mcp", dir))
	}
	tk := newMCPTasks(s, "gw", []string{"fs:read", "fs:write", "mcp:read", "mcp:write"}, []string{"fs:read", "mcp:read"})

	// The filesystem the stdio server serves, and the example policies
	// with /srv/ standing for it.
	fsRoot := filepath.Join(s.dir, "srv")
	for _, d := range []string{"shared", "agents/" + tk.plannerTask, "agents/" + tk.childTk} {
		if err := os.MkdirAll(filepath.Join(fsRoot, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(fsRoot, "shared", "notes.md"), "the shared notes\n")
	policyDir := filepath.Join(s.dir, "mcp-policies")
	os.Mkdir(policyDir, 0o755)
	fsPolicy := strings.ReplaceAll(string(mustRead(t, filepath.Join(root, "examples", "mcp", "filesystem", "policy.hcl"))), "/srv/", fsRoot+"/")
	writeFile(t, filepath.Join(policyDir, "filesystem.hcl"), fsPolicy)
	writeFile(t, filepath.Join(policyDir, "everything.hcl"), string(mustRead(t, filepath.Join(root, "examples", "mcp", "everything", "policy.hcl"))))

	vbin := s.buildDaemon("./cmd/agentid-verifier")
	s.srv.CreateEntry(t, "spiffe://example.org/verifier", s.agent.NodeID.String(), "unix:path:"+vbin)
	gateway := func(name, resource, upstream string) (string, *daemon) {
		t.Helper()
		scheme, plaintext := "http", "plaintext = true"
		if strings.HasSuffix(name, "-tls") {
			scheme, plaintext = "https", "" // TLS with the verifier's SVID
		}
		listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
		cfg := filepath.Join(s.dir, name+".hcl")
		writeFile(t, cfg, `
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
workload_api { socket = "`+s.agent.SocketPath+`" }
audit { path = "`+filepath.Join(s.dir, "audit", name+".log")+`" }
mcp {
  listen    = "`+listen+`"
  resource  = "`+resource+`"
  `+plaintext+`
  `+upstream+`
}
`)
		d := startDaemon(t, vbin, "-config", cfg)
		waitTCP(t, listen, 30*time.Second)
		return scheme + "://" + listen + "/mcp", d
	}
	const filesResource, everythingResource = "https://files.example.org/mcp", "https://everything.example.org/mcp"
	filesURL, filesGateway := gateway("files", filesResource,
		`upstream_command = ["`+js.Node+`", "`+js.Bin("mcp-server-filesystem")+`", "`+fsRoot+`"]`)
	everything := js.StartEverything(t)
	everythingURL, everythingGateway := gateway("everything", everythingResource, `upstream = "`+everything.URL+`"`)

	t.Run("server-filesystem over stdio", func(t *testing.T) {
		planner, child := s.jwtAs(tk.planner, filesResource), s.jwtAs(tk.child, filesResource)
		own := filepath.Join(fsRoot, "agents", tk.plannerTask, "out.md")
		out := runTSClient(t, js, filesURL, planner, "list",
			"call", "read_text_file", `{"path":"`+fsRoot+`/shared/notes.md"}`,
			"call", "write_file", `{"path":"`+own+`","content":"planner's notes"}`,
			"call", "write_file", `{"path":"`+fsRoot+`/shared/notes.md","content":"overwritten"}`)
		readTools := []string{"get_file_info", "list_directory", "read_file", "read_text_file", "search_files"}
		allTools := sorted(append(slices.Clone(readTools), "create_directory", "edit_file", "move_file", "write_file"))
		if got := sorted(out[1].Tools); !slices.Equal(got, allTools) {
			t.Errorf("planner's tools %q, want %q", got, allTools)
		}
		if out[2].Error != nil || !strings.Contains(string(out[2].Result), "the shared notes") {
			t.Errorf("planner reads the shared notes: %+v %s", out[2].Error, out[2].Result)
		}
		if b, err := os.ReadFile(own); out[3].Error != nil || err != nil || string(b) != "planner's notes" {
			t.Errorf("planner writes below its own directory: %+v %s; file: %q %v", out[3].Error, out[3].Result, b, err)
		}
		wantTSRefusal(t, out[4], "fs-write-outside-task (filesystem.hcl:")
		if b := mustRead(t, filepath.Join(fsRoot, "shared", "notes.md")); string(b) != "the shared notes\n" {
			t.Errorf("a refused write reached the server: %q", b)
		}

		childOwn := filepath.Join(fsRoot, "agents", tk.childTk, "out.md")
		out = runTSClient(t, js, filesURL, child, "list",
			"call", "read_text_file", `{"path":"`+fsRoot+`/shared/notes.md"}`,
			"call", "write_file", `{"path":"`+fsRoot+`/shared/notes.md","content":"overwritten"}`,
			"call", "write_file", `{"path":"`+childOwn+`","content":"x"}`)
		if got := sorted(out[1].Tools); !slices.Equal(got, readTools) {
			t.Errorf("delegated researcher's tools %q, want %q (fewer than its planner's)", got, readTools)
		}
		if out[2].Error != nil || !strings.Contains(string(out[2].Result), "the shared notes") {
			t.Errorf("researcher reads the shared notes: %+v %s", out[2].Error, out[2].Result)
		}
		wantTSRefusal(t, out[3], "fs-write-outside-task (filesystem.hcl:")
		// below its own directory fs:write would allow it: 403 insufficient_scope
		if e := out[4].Error; e == nil || e.Code != 403 {
			t.Errorf("researcher without fs:write writes below its own directory: %+v %s", e, out[4].Result)
		}
		if _, err := os.Stat(childOwn); !os.IsNotExist(err) {
			t.Errorf("the researcher's refused write reached the server: %v", err)
		}

		// the files gateway's token at the other gateway
		if out := runTSClient(t, js, everythingURL, planner); out[0].Error == nil || out[0].Error.Code != 401 {
			t.Errorf("a bearer minted for the files gateway connects to the everything gateway: %+v", out[0])
		}
	})

	t.Run("server-everything over Streamable HTTP", func(t *testing.T) {
		planner, child := s.jwtAs(tk.planner, everythingResource), s.jwtAs(tk.child, everythingResource)
		out := runTSClient(t, js, everythingURL, planner, "list",
			"call", "echo", `{"message":"hello"}`,
			"call", "gzip-file-as-resource", `{"name":"a.gz","data":"data:text/plain;base64,aGVsbG8="}`,
			"call", "gzip-file-as-resource", `{"name":"b.gz","data":"http://169.254.169.254/latest/meta-data/"}`,
			"call", "get-env")
		readTools := []string{"echo", "get-annotated-message", "get-structured-content", "get-sum", "get-tiny-image"}
		allTools := sorted(append(slices.Clone(readTools), "gzip-file-as-resource", "toggle-simulated-logging", "toggle-subscriber-updates"))
		if got := sorted(out[1].Tools); !slices.Equal(got, allTools) {
			t.Errorf("planner's tools %q, want %q", got, allTools)
		}
		if out[2].Error != nil || !strings.Contains(string(out[2].Result), "Echo: hello") {
			t.Errorf("planner echoes: %+v %s", out[2].Error, out[2].Result)
		}
		if out[3].Error != nil || !strings.Contains(string(out[3].Result), "a.gz") {
			t.Errorf("planner gzips inline data: %+v %s", out[3].Error, out[3].Result)
		}
		wantTSRefusal(t, out[4], "everything-no-fetch (everything.hcl:")
		wantTSRefusal(t, out[5], "everything-no-env (everything.hcl:")

		out = runTSClient(t, js, everythingURL, child, "list",
			"call", "get-sum", `{"a":2,"b":3}`,
			"call", "gzip-file-as-resource", `{"name":"b.gz","data":"http://169.254.169.254/latest/meta-data/"}`)
		if got := sorted(out[1].Tools); !slices.Equal(got, readTools) {
			t.Errorf("delegated researcher's tools %q, want %q (fewer than its planner's)", got, readTools)
		}
		if out[2].Error != nil || !strings.Contains(string(out[2].Result), "The sum of 2 and 3 is 5.") {
			t.Errorf("researcher sums: %+v %s", out[2].Error, out[2].Result)
		}
		wantTSRefusal(t, out[3], "everything-no-fetch (everything.hcl:")

		// resources and prompts: listed as the policy allows, each
		// resources/read and prompts/get decided
		const docs = "demo://resource/static/document/"
		out = runTSClient(t, js, everythingURL, planner, "resources", "read", docs+"features.md", "read", docs+"architecture.md",
			"prompts", "prompt", "args-prompt", `{"city":"Paris"}`)
		if got := out[1].Resources; !slices.Contains(got, docs+"features.md") || slices.Contains(got, docs+"architecture.md") {
			t.Errorf("planner's resources %q: want the documents without architecture.md", got)
		}
		if out[2].Error != nil || !strings.Contains(string(out[2].Result), "Everything Server - Features") {
			t.Errorf("planner reads features.md: %+v %.200s", out[2].Error, out[2].Result)
		}
		wantTSRefusal(t, out[3], "everything-docs-internal (everything.hcl:")
		if got := sorted(out[4].Prompts); !slices.Equal(got, []string{"args-prompt", "completable-prompt", "simple-prompt"}) {
			t.Errorf("planner's prompts %q", got)
		}
		if out[5].Error != nil || !strings.Contains(string(out[5].Result), "Paris") {
			t.Errorf("planner gets args-prompt: %+v %s", out[5].Error, out[5].Result)
		}
		out = runTSClient(t, js, everythingURL, child, "prompts", "prompt", "args-prompt", `{"city":"Paris"}`)
		if got := out[1].Prompts; !slices.Equal(got, []string{"simple-prompt"}) {
			t.Errorf("delegated researcher's prompts %q, want [simple-prompt]", got)
		}
		// mcp:write would allow it: 403 insufficient_scope
		if e := out[2].Error; e == nil || e.Code != 403 || !strings.Contains(e.Message, `"scopes":["mcp:write"]`) {
			t.Errorf("researcher without mcp:write gets args-prompt: %+v %s", e, out[2].Result)
		}

		// completion/complete is decided as the prompt or resource it
		// completes; resources/templates/list is filtered (no pattern
		// covers server-everything's dynamic templates)
		const dynamic = "demo://resource/dynamic/text/{resourceId}"
		out = runTSClient(t, js, everythingURL, planner, "templates",
			"complete", "ref/prompt", "completable-prompt", "department", "E",
			"complete", "ref/resource", dynamic, "resourceId", "1")
		if got := out[1].Templates; len(got) != 0 || out[1].Error != nil {
			t.Errorf("planner's resource templates %q %+v, want none", got, out[1].Error)
		}
		if out[2].Error != nil || !strings.Contains(string(out[2].Result), "Engineering") {
			t.Errorf("planner completes completable-prompt: %+v %s", out[2].Error, out[2].Result)
		}
		wantTSRefusal(t, out[3], "default deny")
		out = runTSClient(t, js, everythingURL, child, "complete", "ref/prompt", "completable-prompt", "department", "E")
		if e := out[1].Error; e == nil || e.Code != 403 || !strings.Contains(e.Message, `"scopes":["mcp:write"]`) || strings.Contains(string(out[1].Result), "Engineering") {
			t.Errorf("researcher without mcp:write completes completable-prompt: %+v %s", e, out[1].Result)
		}
	})

	t.Run("SPIFFE mTLS", func(t *testing.T) {
		// The researcher's X.509-SVID, as the task fetches it; the
		// gateway serves TLS with the verifier's SVID.
		url, _ := gateway("everything-tls", everythingResource, `upstream = "`+everything.URL+`"`)
		dir := filepath.Join(s.dir, "researcher-svid")
		os.Mkdir(dir, 0o700)
		s.mustRun("run", "--task-file", tk.child, "--manifest-dir", s.manifestDir, "--",
			filepath.Join(spiretestBin(t), "spire-agent"), "api", "fetch", "x509", "-socketPath", s.agent.SocketPath, "-write", dir)
		out := runTSClient(t, js, url, "", "--svid-dir", dir, "--server-id", "spiffe://example.org/verifier",
			"list", "call", "get-sum", `{"a":2,"b":3}`, "call", "gzip-file-as-resource", `{"name":"b.gz","data":"http://169.254.169.254/"}`)
		readTools := []string{"echo", "get-annotated-message", "get-structured-content", "get-sum", "get-tiny-image"}
		if got := sorted(out[1].Tools); !slices.Equal(got, readTools) {
			t.Errorf("researcher's tools over mTLS %q, want %q", got, readTools)
		}
		if out[2].Error != nil || !strings.Contains(string(out[2].Result), "The sum of 2 and 3 is 5.") {
			t.Errorf("researcher sums over mTLS: %+v %s", out[2].Error, out[2].Result)
		}
		wantTSRefusal(t, out[3], "everything-no-fetch (everything.hcl:")
		// the client checks the server's SPIFFE ID
		if out := runTSClient(t, js, url, "", "--svid-dir", dir, "--server-id", "spiffe://example.org/not-the-gateway", "list"); out[0].Error == nil ||
			!strings.Contains(out[0].Error.Message, "not spiffe://example.org/not-the-gateway") {
			t.Errorf("a gateway with another SPIFFE ID: %+v", out[0])
		}
	})

	t.Run("faults", func(t *testing.T) {
		// The stdio child is killed: the gateway restarts it.
		planner := s.jwtAs(tk.planner, filesResource)
		old := fsChildren(t, filesGateway.cmd.Process.Pid)
		if len(old) != 1 {
			t.Fatalf("the files gateway runs %d server-filesystem children, want 1", len(old))
		}
		if err := syscall.Kill(old[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		read := `{"path":"` + fsRoot + `/shared/notes.md"}`
		pollTSClient(t, 20*time.Second, "server-filesystem restarted", func() bool {
			out := runTSClient(t, js, filesURL, planner, "call", "read_text_file", read)
			return out[0].Error == nil && out[1].Error == nil && strings.Contains(string(out[1].Result), "the shared notes")
		})
		if now := fsChildren(t, filesGateway.cmd.Process.Pid); len(now) != 1 || now[0] == old[0] {
			t.Errorf("server-filesystem children after the crash: %v (the killed one: %d)", now, old[0])
		}

		// The Streamable HTTP upstream dies: a session cannot be opened
		// (the gateway's JSON-RPC error -32033), the gateway stays up, and
		// serves again once the upstream is back.
		planner = s.jwtAs(tk.planner, everythingResource)
		everything.Kill()
		out := runTSClient(t, js, everythingURL, planner, "call", "echo", `{"message":"down"}`)
		if e := out[len(out)-1].Error; e == nil || e.Code != -32033 || !strings.Contains(e.Message, "cannot be reached") {
			t.Errorf("echo with the upstream down: want the gateway's JSON-RPC error -32033, got %+v", out[len(out)-1])
		}
		everything.Restart()
		pollTSClient(t, 20*time.Second, "server-everything back", func() bool {
			out := runTSClient(t, js, everythingURL, planner, "call", "echo", `{"message":"back"}`)
			return out[0].Error == nil && out[1].Error == nil && strings.Contains(string(out[1].Result), "Echo: back")
		})
		for _, d := range []*daemon{filesGateway, everythingGateway} {
			if err := syscall.Kill(d.cmd.Process.Pid, 0); err != nil {
				t.Errorf("a gateway died: %v\n%s", err, d.log.String())
			}
		}
	})

	// Each gateway recorded its decisions, the refusals with their rules.
	for name, rule := range map[string]string{"files": "fs-write-outside-task", "everything": "everything-no-fetch"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var found bool
			for _, r := range auditRecords(t, filepath.Join(s.dir, "audit", name+".log")) {
				if r.Decision == "deny" && r.Peer == tk.childID && len(r.Rules) > 0 && strings.HasPrefix(r.Rules[0], rule+" (") {
					found = true
				}
			}
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the %s gateway's audit log has no denial of the researcher by %s", name, rule)
				break
			}
			time.Sleep(100 * time.Millisecond) // the log is flushed in batches
		}
	}
}

// wantTSRefusal checks that a line of the TypeScript client is an MCP
// error of a policy denial naming rule.
func wantTSRefusal(t *testing.T, l tsLine, rule string) {
	t.Helper()
	if l.Error == nil || l.Error.Code != mcpauth.CodeForbidden || !strings.Contains(l.Error.Message, rule) {
		t.Errorf("%s %s: want an MCP error %d naming %q, got %+v %s", l.Op, l.Tool, mcpauth.CodeForbidden, rule, l.Error, l.Result)
	}
}

// pollTSClient calls try until it returns true, failing the test after
// timeout.
func pollTSClient(t *testing.T, timeout time.Duration, what string, try func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !try() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fsChildren returns the PIDs of the server-filesystem processes whose
// parent is ppid.
func fsChildren(t *testing.T, ppid int) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) && bytes.Contains(cmdline, []byte("mcp-server-filesystem")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
