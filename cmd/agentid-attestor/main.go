// Command agentid-attestor is the agentid WorkloadAttestor plugin for the
// SPIRE agent: it maps a workload's PID to the selectors of the task it
// runs, through the manifest `agentid run` wrote for it. SPIRE starts it
// (plugin_cmd in agent.conf); see docs/attestor.md. It never writes to
// stdout, which belongs to the plugin handshake.
package main

import (
	"github.com/agentid/agentid/plugins/workloadattestor"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

func main() {
	p := workloadattestor.New()
	pluginmain.Serve(
		workloadattestorv1.WorkloadAttestorPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}
