// Command agentid-composer is the agentid CredentialComposer plugin for the
// SPIRE server: it adds each agent task's claims to the X.509- and
// JWT-SVIDs SPIRE signs for it. SPIRE starts it (plugin_cmd in server.conf);
// see docs/composer.md. It never writes to stdout, which belongs to the
// plugin handshake.
package main

import (
	"github.com/agentid/agentid/plugins/credentialcomposer"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

func main() {
	p := credentialcomposer.New()
	pluginmain.Serve(
		credentialcomposerv1.CredentialComposerPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}
