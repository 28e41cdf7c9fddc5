package workloadattestor_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/plugins/workloadattestor"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPanicIsOneFailedCall: a bug that panics inside Attest (here: the
// injected clock) fails that call with Internal and a logged stack; the
// plugin keeps serving, and the next call succeeds.
func TestPanicIsOneFailedCall(t *testing.T) {
	var broken atomic.Bool
	h := &harness{
		wa:   new(workloadattestorv1.WorkloadAttestorPluginClient),
		conf: new(configv1.ConfigServiceClient),
		logs: new(syncBuffer),
	}
	p := workloadattestor.New(attestor.WithClock(func() time.Time {
		if broken.Load() {
			panic("clock broke")
		}
		return testNow
	}))
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   workloadattestorv1.WorkloadAttestorPluginServer(p),
		PluginClient:   h.wa,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{h.conf},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: h.logs, Level: hclog.Debug}),
	})
	dir := manifestDir(t)
	if err := h.configure(`manifest_dir = "` + dir + `"`); err != nil {
		t.Fatal(err)
	}
	pid := startSleep(t)
	manifestFor(t, dir, pid)

	broken.Store(true)
	_, err := h.attest(pid)
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("Attest with a panicking clock = %v, want Internal", err)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "Recovered from a panic") || !strings.Contains(logs, "method=Attest") || !strings.Contains(logs, "clock broke") {
		t.Fatalf("no log line for the panic:\n%s", logs)
	}

	broken.Store(false)
	sel, err := h.attest(pid)
	if err != nil || len(sel) == 0 {
		t.Fatalf("Attest after the panic = %v, %v; want the task's selectors", sel, err)
	}
}
