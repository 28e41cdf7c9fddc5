package devstack

import (
	"fmt"
	"strconv"
	"strings"
)

// q quotes a string for HCL (Go quoting is a subset HCL reads).
func q(s string) string { return strconv.Quote(s) }

// serverConfig is spire-server's configuration: sqlite datastore, disk key
// manager, join_token node attestor, fast entry cache reloads and the
// agentid composer reading entries back from the server's own socket.
func (s *Stack) serverConfig(composer, composerSum string) string {
	return fmt.Sprintf(`# agentid dev: spire-server
server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %s
    trust_domain = %s
    data_dir = %s
    log_level = %s
    default_x509_svid_ttl = "1h"
    default_jwt_svid_ttl = "5m"
    ca_ttl = "24h"
    experimental {
        # Follow entry changes through SPIRE's events table instead of
        # reloading every entry each interval: a full reload per second
        # costs 0.59 of a core at 20,000 tasks, the events 0.04.
        events_based_cache = true
        # new and deleted entries reach the agent in about a second
        cache_reload_interval = "1s"
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %s
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = %s
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    CredentialComposer "agentid" {
        plugin_cmd = %s
        plugin_checksum = %q
        plugin_data {
            server_api_socket = %s
            cache_ttl = "1s"
        }
    }
}
`, s.ServerPort, q(s.ServerSocket), q(s.TrustDomain), q(s.path("server", "data")), q(s.logLevel),
		q(s.path("server", "data", "datastore.sqlite3")), q(s.path("server", "data", "keys.json")),
		q(composer), composerSum, q(s.ServerSocket))
}

// agentConfig is spire-agent's configuration: join token attestation,
// the unix workload attestor reporting unix:path selectors (how the
// daemons are registered) and the agentid attestor reading the manifest
// directory.
func (s *Stack) agentConfig(attestor, attestorSum string) string {
	return fmt.Sprintf(`# agentid dev: spire-agent
agent {
    data_dir = %s
    log_level = %s
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %s
    trust_domain = %s
    insecure_bootstrap = true
    experimental {
        sync_interval = "1s"
    }
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = %s
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
            # unix:path:<binary> selectors register the daemons by their
            # executable; never hash the binary.
            discover_workload_path = true
            workload_size_limit = -1
        }
    }
    WorkloadAttestor "agentid" {
        plugin_cmd = %s
        plugin_checksum = %q
        plugin_data {
            manifest_dir = %s
            # INSECURE, single-user development: agents run as the user
            # that launches them and could write their own manifests.
            allow_same_user = true
        }
    }
}
`, q(s.path("agent", "data")), q(s.logLevel), s.ServerPort, q(s.AgentSocket), q(s.TrustDomain),
		q(s.path("agent", "data")), q(attestor), attestorSum, q(s.ManifestDir))
}

// issuancePolicy is the registrar's permissive development policy: any
// agent, model, prompt, scope and principal, delegation by anyone.
const issuancePolicy = `# agentid dev: a permissive issuance policy. Anything goes, within the
# delegation rules the registrar always enforces (child scope within the
# parent's, deadline no later than the parent's, no agent twice, depth <= 16).
# Edit it and send SIGHUP to agentid-registrar to reload.
agent "*" {
  models     = ["*"]
  prompts    = ["*"]
  scopes     = ["*"]
  principals = ["*"]
  max_ttl    = "24h"
  delegators = ["*"]
}
`

// registrarConfig is agentid-registrar's configuration.
func (s *Stack) registrarConfig(port int, operatorSocket, auditPath string) string {
	return fmt.Sprintf(`# agentid dev: agentid-registrar (see docs/registrar.md)
trust_domain         = %s
server_api_socket    = %s
issuance_policy      = %s
parent_id            = %s
operator_socket      = %s
operator_socket_mode = "0600"
listen               = "127.0.0.1:%d"
workload_api_socket  = %s
jwt_audience         = %s

# The verifiers watch the live tasks here (the kill switch).
liveness {
  subscribers = [%s]
  interval    = "500ms"
}

`, q(s.TrustDomain), q(s.ServerSocket), q(s.IssuancePolicy), q(s.NodeID), q(operatorSocket),
		port, q(s.AgentSocket), q(s.RegistrarID), q(s.VerifierID)) + s.quietSettings() +
		"\n# Every task action, signed as the registrar (docs/audit.md).\n" + s.auditBlock(auditPath, s.RegistrarID, "")
}

// quietSettings are the registrar settings Options shortens for tests.
func (s *Stack) quietSettings() string {
	var out string
	if s.maxJWT != 0 {
		out += fmt.Sprintf("max_jwt_svid_ttl      = %q\n", s.maxJWT.String())
	}
	if s.quiet != 0 {
		out += fmt.Sprintf("recreate_quiet_period = %q\n", s.quiet.String())
	}
	return out
}

// devVerifierPolicy is the default verifier's policy: any task of the trust
// domain may do anything but delete.
func devVerifierPolicy(td string) string {
	return fmt.Sprintf(`# agentid dev: the default verifier policy (see docs/policy.md).
# The verifier reloads this directory when a file changes.

rule "dev-tasks" {
  effect = "allow"
  reason = "agentid dev: any task of %[1]s may call"

  peer {
    trust_domain  = [%[2]s]
    task_required = true
  }
}

rule "dev-no-deletes" {
  effect = "deny"
  reason = "agentid dev: no HTTP DELETE through an agent"

  action {
    http {
      methods = ["DELETE"]
    }
  }
}
`, td, q(td))
}

// verifierConfig is agentid-verifier's configuration.
func (s *Stack) verifierConfig(v *Verifier, opts VerifierOptions, proxyPort, checkPort, metricsPort, mcpPort int) string {
	audiences := ""
	for i, a := range opts.JWTAudiences {
		if i > 0 {
			audiences += ", "
		}
		audiences += q(a)
	}
	cfg := fmt.Sprintf(`# agentid dev: agentid-verifier %s (see docs/verifier.md)
trust_domain  = %s
policy_dir    = %s
jwt_audiences = [%s]

workload_api {
  socket = %s
}

`, q(v.Name), q(s.TrustDomain), q(v.PolicyDir), audiences, q(s.AgentSocket))
	extra := ""
	if opts.CheckpointInterval > 0 {
		extra = fmt.Sprintf("  checkpoint_interval = %q\n", opts.CheckpointInterval.String())
	}
	cfg += s.auditBlock(v.AuditPath, s.VerifierID, extra)
	if opts.ProxyUpstream != "" {
		cfg += fmt.Sprintf("\nproxy {\n  listen   = \"127.0.0.1:%d\"\n  upstream = %s\n", proxyPort, q(opts.ProxyUpstream))
		if len(opts.MCPPaths) > 0 {
			cfg += "  mcp_paths = ["
			for i, p := range opts.MCPPaths {
				if i > 0 {
					cfg += ", "
				}
				cfg += q(p)
			}
			cfg += "]\n"
		}
		cfg += "}\n"
	}
	if m := opts.MCP; m != nil {
		cfg += fmt.Sprintf("\n# The MCP gateway (docs/mcp.md): plain HTTP on loopback, JWT-SVID bearers.\nmcp {\n  listen    = \"127.0.0.1:%d\"\n  resource  = %s\n  plaintext = true\n", mcpPort, q(m.Resource))
		if m.Upstream != "" {
			cfg += "  upstream  = " + q(m.Upstream) + "\n"
		} else {
			quoted := make([]string, len(m.Command))
			for i, a := range m.Command {
				quoted[i] = q(a)
			}
			cfg += "  upstream_command = [" + strings.Join(quoted, ", ") + "]\n"
		}
		cfg += "}\n"
	}
	cfg += fmt.Sprintf("\ncheck_api {\n  listen = \"127.0.0.1:%d\"\n}\n\n# AuthZEN 1.0 on the check API's listener (docs/authzen.md).\nauthzen {\n  subject_types = [\"user\"]\n}\n\nmetrics {\n  listen = \"127.0.0.1:%d\"\n}\n", checkPort, metricsPort)
	registrars := opts.Registrars
	if len(registrars) == 0 {
		registrars = []string{s.RegistrarAddr}
	}
	quoted := make([]string, len(registrars))
	for i, r := range registrars {
		quoted[i] = q(r)
	}
	cfg += fmt.Sprintf("\n# Revoked tasks are refused within the feed's interval (the kill switch).\nliveness {\n  registrars    = [%s]\n  registrar_ids = [%s]\n  max_staleness = \"5s\"\n}\n", strings.Join(quoted, ", "), q(s.RegistrarID))
	return cfg
}

// samplePrompt is the system prompt the printed commands digest.
const samplePrompt = "You are a careful research assistant. Cite your sources.\n"
