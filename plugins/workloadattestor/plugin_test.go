package workloadattestor_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/plugins/workloadattestor"
	"github.com/agentid/agentid/svid"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var testNow = time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC)

// testIncarnation is the incarnation of the test manifests.
const testIncarnation = "0123456789abcdef0123456789abcdef"

func testClaims() svid.Claims {
	return svid.Claims{
		V: svid.Version, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt:    svid.PromptDigest([]byte("prompt")),
		Scope:     []string{"kb:read"},
		Principal: "spiffe://example.org/user/alice",
		Deadline:  testNow.Add(time.Hour),
	}
}

// syncBuffer collects the plugin's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	wa   *workloadattestorv1.WorkloadAttestorPluginClient
	conf *configv1.ConfigServiceClient
	logs *syncBuffer
}

func serve(t *testing.T) *harness {
	return serveWith(t, attestor.WithClock(func() time.Time { return testNow }))
}

// serveWith serves a plugin made with opts.
func serveWith(t *testing.T, opts ...attestor.Option) *harness {
	h := &harness{
		wa:   new(workloadattestorv1.WorkloadAttestorPluginClient),
		conf: new(configv1.ConfigServiceClient),
		logs: new(syncBuffer),
	}
	p := workloadattestor.New(opts...)
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   workloadattestorv1.WorkloadAttestorPluginServer(p),
		PluginClient:   h.wa,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{h.conf},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: h.logs, Level: hclog.Debug}),
	})
	return h
}

func (h *harness) configure(hcl string) error {
	_, err := h.conf.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "example.org"},
		HclConfiguration:  hcl,
	})
	return err
}

func (h *harness) attest(pid int) ([]string, error) {
	resp, err := h.wa.Attest(context.Background(), &workloadattestorv1.AttestRequest{Pid: int32(pid)})
	return resp.GetSelectorValues(), err
}

// startSleep starts `sleep 60`, killed when the test ends. As root it runs
// as an unprivileged uid without a passwd entry, as an agent must: the
// attestor refuses processes that could write the manifest directory.
func startSleep(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 61001, Gid: 61001, Groups: []uint32{}}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// sleepPins are the executable pin selectors of sleep, both layouts.
func sleepPins(t *testing.T) []string {
	t.Helper()
	path, _ := exec.LookPath("sleep")
	sum, err := attestor.ExecutableDigest(path)
	if err != nil {
		t.Fatal(err)
	}
	m := attestor.Manifest{Incarnation: testIncarnation, Claims: testClaims()}
	return m.ExeSelectors(sum)
}

// manifestFor writes the manifest of testClaims for a live pid.
func manifestFor(t *testing.T, dir string, pid int) string {
	t.Helper()
	st, err := attestor.ReadStat("", pid)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := attestor.ReadNamespaces("", pid)
	if err != nil {
		t.Fatal(err)
	}
	path, err := attestor.WriteManifest(dir, attestor.Manifest{PID: pid, StartTime: st.StartTime, UserNS: ns.User, MntNS: ns.Mnt, Incarnation: testIncarnation, Claims: testClaims()})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func manifestDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "tasks")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAttestBeforeConfigure(t *testing.T) {
	h := serve(t)
	_, err := h.attest(os.Getpid())
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Attest before Configure = %v, want FailedPrecondition", err)
	}
}

func TestConfigure(t *testing.T) {
	tests := []struct {
		name, hcl string
		want      string // "" means accepted
	}{
		{"empty", "", ""},
		{"full", "manifest_dir = \"/run/agentid/tasks\"\ninherit_depth = 2\nallowed_owner_uids = [0, 1001]\nrequire_exe_sha256 = true\n", ""},
		{"unknown key", "manifest_dir = \"/run/x\"\ninherit_dept = 1\n",
			`plugin_data:2:1: Unsupported argument; An argument named "inherit_dept" is not expected here. Did you mean "inherit_depth"?`},
		{"bad hcl", "manifest_dir = \n", "plugin_data:1:16: Invalid expression"},
		{"bad value", "inherit_depth = 99\n", "plugin_data:1:17: Invalid inherit_depth; 99 is not 0..8"},
		{"bad type", "allowed_owner_uids = \"root\"\n", "Unsuitable value type for allowed_owner_uids"},
	}
	h := serve(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.configure(tt.hcl)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Configure = %v", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Errorf("Configure = %v\nwant InvalidArgument containing %q", err, tt.want)
			}
			valid, verr := h.conf.Validate(context.Background(), &configv1.ValidateRequest{HclConfiguration: tt.hcl})
			if verr != nil || valid.GetValid() || len(valid.GetNotes()) != 1 || !strings.Contains(valid.GetNotes()[0], tt.want) {
				t.Errorf("Validate = %v, %v", valid, verr)
			}
		})
	}
}

func TestAttest(t *testing.T) {
	h := serve(t)
	dir := manifestDir(t)
	if err := h.configure(fmt.Sprintf("manifest_dir = %q\n", dir)); err != nil {
		t.Fatal(err)
	}
	withManifest, without := startSleep(t), startSleep(t)
	manifestFor(t, dir, withManifest)

	sel, err := h.attest(withManifest)
	want := append(attestor.Manifest{Incarnation: testIncarnation, Claims: testClaims()}.Selectors(), sleepPins(t)...)
	if err != nil || !slices.Equal(sel, want) {
		t.Errorf("Attest(with manifest) = %q, %v; want %q", sel, err, want)
	}
	if sel, err := h.attest(without); err != nil || len(sel) != 0 {
		t.Errorf("Attest(without manifest) = %q, %v; want none", sel, err)
	}

	// A tampered manifest: no selectors, no error, a warning naming it.
	tampered := startSleep(t)
	path := manifestFor(t, dir, tampered)
	os.Chmod(path, 0o666)
	if sel, err := h.attest(tampered); err != nil || len(sel) != 0 {
		t.Errorf("Attest(group-writable manifest) = %q, %v; want none", sel, err)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "[WARN]") || !strings.Contains(logs, path) ||
		!strings.Contains(logs, "group- or world-writable") {
		t.Errorf("no warning naming %s:\n%s", path, logs)
	}

	// A process that no longer exists is an error (as in SPIRE's unix attestor).
	gone := exec.Command("true")
	gone.Run()
	if _, err := h.attest(gone.Process.Pid); status.Code(err) != codes.Internal {
		t.Errorf("Attest(gone) = %v, want Internal", err)
	}
}

// TestReconfigureWhileAttesting swaps configurations under load; run with
// -race. Every answer must be one of the two configurations' answers.
func TestReconfigureWhileAttesting(t *testing.T) {
	h := serve(t)
	dirA, dirB := manifestDir(t), manifestDir(t)
	pid := startSleep(t)
	manifestFor(t, dirA, pid) // dirB has none for pid
	cfgA, cfgB := fmt.Sprintf("manifest_dir = %q\n", dirA), fmt.Sprintf("manifest_dir = %q\ninherit_depth = 1\n", dirB)
	if err := h.configure(cfgA); err != nil {
		t.Fatal(err)
	}
	want := append(attestor.Manifest{Incarnation: testIncarnation, Claims: testClaims()}.Selectors(), sleepPins(t)...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				sel, err := h.attest(pid)
				if err != nil || len(sel) != 0 && !slices.Equal(sel, want) {
					t.Errorf("Attest during reconfiguration = %q, %v", sel, err)
					return
				}
			}
		})
	}
	for i := range 50 {
		cfg := cfgA
		if i%2 == 0 {
			cfg = cfgB
		}
		if err := h.configure(cfg); err != nil {
			t.Error(err)
		}
	}
	cancel()
	wg.Wait()
	if err := h.configure(cfgA); err != nil {
		t.Fatal(err)
	}
	if sel, err := h.attest(pid); err != nil || !slices.Equal(sel, want) {
		t.Errorf("after reconfiguration: %q, %v", sel, err)
	}
}

// TestAttestMaxExeBytes: through the plugin, max_exe_bytes below the size
// of the process's executable leaves out the executable pins (nothing is
// hashed) and logs why.
func TestAttestMaxExeBytes(t *testing.T) {
	h := serve(t)
	dir := manifestDir(t)
	if err := h.configure(fmt.Sprintf("manifest_dir = %q\nmax_exe_bytes = 1024\n", dir)); err != nil {
		t.Fatal(err)
	}
	pid := startSleep(t)
	manifestFor(t, dir, pid)
	sel, err := h.attest(pid)
	if want := (attestor.Manifest{Incarnation: testIncarnation, Claims: testClaims()}).Selectors(); err != nil || !slices.Equal(sel, want) {
		t.Errorf("Attest = %q, %v; want %q (no executable pins)", sel, err, want)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "max_exe_bytes=1024") || !strings.Contains(logs, "over max_exe_bytes 1024") {
		t.Errorf("logs do not show the limit and the skipped digest:\n%s", logs)
	}
}
