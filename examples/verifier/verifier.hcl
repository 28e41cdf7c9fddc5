# agentid-verifier configuration: see docs/verifier.md.
trust_domain  = "example.org"
trust_domains = ["example.org"]            # peers and delegation chains must stay inside these
policy_dir    = "/etc/agentid/policies"    # *.hcl, reloaded on change and on SIGHUP, all-or-nothing;
                                           # may be a symlink flipped to a new release, or a ConfigMap
                                           # volume (docs/verifier.md, "Reloading the policy")
jwt_audiences = ["kb"]                      # JWT-SVIDs must name one of these
# Identity headers sent upstream (proxy, ext_authz); "claims" adds the
# base64url JSON of every claim. Default: all but "claims".
identity_headers = ["agent", "principal", "rule", "spiffe_id", "task"]

# Where the trust bundles and the verifier's own SVID come from.
workload_api {
  socket = "/run/spire/agent/public/api.sock"
}

audit {
  path                = "/var/log/agentid/audit.log"
  durability          = "batch"   # written per batch, fsync at most every 10 ms; "every" or "none"
  max_bytes           = 67108864  # rotate at 64 MiB, the chain continues
  # rotate_interval     = "24h"     # also rotate daily
  # max_segments        = 30        # retention: keep 30 files (receipts stay valid)
  checkpoint_every    = 1000      # signed checkpoint every 1000 records…
  checkpoint_interval = "1m"      # …and at least once a minute
  on_failure          = "deny"    # a decision the log cannot take is refused (503); "allow" gives it unrecorded
}

ext_authz {
  listen          = "127.0.0.1:9191"    # Envoy's ext_authz gRPC cluster
  mcp_paths       = ["/mcp"]
  allowed_callers = ["spiffe://example.org/envoy"] # SPIFFE mTLS: only Envoy may ask
}

proxy {
  listen    = "0.0.0.0:8443"      # SPIFFE mTLS
  upstream  = "http://127.0.0.1:8080"
  mcp_paths = ["/mcp"]
  # allow_upgrades = true         # WebSocket/h2c (default false: refused); upgraded connections are re-checked and closed on revocation or expiry
}

check_api {
  listen          = "127.0.0.1:9192"  # POST /v1/check
  allowed_callers = ["spiffe://example.org/kb"] # SPIFFE mTLS: only the service may ask (omit: plain HTTP, loopback only)
}

authzen {                         # AuthZEN 1.0 on the check API listener (same mTLS and callers)
  subject_types         = ["user"]  # asserted subjects (the PEP's word); agent_task is always proven
  max_batch             = 1000      # evaluations per /access/v1/evaluations request
  policy_decision_point = "https://pdp.example.org:9192" # discovery; default: the URL asked
  certificates_from_any_caller = false # an agent_task "certificate" only from allowed_callers (it is public)
}

mcp {                             # the MCP gateway (docs/mcp.md); omit when unused
  listen           = "0.0.0.0:8444"                  # TLS with the verifier's SVID; SPIFFE mTLS or JWT-SVID bearer
  resource         = "https://files.example.org/mcp" # RFC 8707 resource: the JWT-SVID audience, RFC 9728 metadata
  upstream         = "http://127.0.0.1:3001/mcp"     # a Streamable HTTP MCP server…
  # upstream_command = ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv"] # …or a stdio one, run as a child
  scopes_supported = ["fs:read", "fs:write"]
  upstream_header {                                  # the MCP server's own credential; the agent never holds it
    name      = "Authorization"
    value_env = "FILES_MCP_TOKEN"                    # or value_file = "/run/secrets/files-mcp-token" (read again when it changes)
    prefix    = "Bearer "
  }
  max_sessions_per_task = 256                        # MCP sessions one task holds; past it its oldest is forgotten (and DELETEd upstream)
  session_idle_timeout  = "1h"                       # forget sessions idle this long (default: never)
}

metrics {
  listen = "127.0.0.1:9090"       # /metrics, /healthz, /readyz
}

signatures {                      # agent-signed requests (RFC 9421, docs/signatures.md): always verified when sent
  require    = false              # true: every request must be signed; false: where a rule says require_signature
  window     = "60s"              # created within this much of now; nonces remembered twice as long
  max_nonces = 1000000            # replay cache bound; full within the window: signed requests refused
  record_body       = false       # true: also record signed bodies, so receipts prove the body, not only its digest
  max_recorded_body = 65536       # bodies larger than this are not recorded (their digest still is)
}
