# agentid-registrar configuration (see docs/registrar.md, "Daemon").
# Loaded by the tests of registrar/server: keep it valid.

# Trust domain of the tasks (and of the agents allowed on the mTLS listener).
trust_domain = "example.org"

# The SPIRE server's local API socket: the registrar writes task entries
# through its Entry API. The socket is 0770 root:root: run as root or in
# the socket's group.
server_api_socket = "/tmp/spire-server/private/api.sock"

# Issuance policy (HCL). SIGHUP reloads it; a file that does not load
# leaves the last good policy in force.
issuance_policy = "/etc/agentid/issuance.hcl"

# SPIRE parent ID of root tasks created without one (optional).
parent_id = "spiffe://example.org/spire/agent/join_token/node1"

# Operators: every RPC on a local unix socket; its permissions are the
# authentication. Mode "0660" (default: owner and group) or "0600".
operator_socket      = "/run/agentid-registrar/operator.sock"
operator_socket_mode = "0660"

# Agent tasks: DelegateTask over SPIFFE mTLS (optional). The registrar's own
# SVID and the bundles come from the SPIRE agent's Workload API.
listen              = "0.0.0.0:8444"
workload_api_socket = "/tmp/spire-agent/public/api.sock"

# Accept JWT-SVID bearers with this audience on DelegateTask (optional).
jwt_audience = "spiffe://example.org/registrar"

# Registrar settings (defaults shown).
selector_type     = "agentid"
max_x509_svid_ttl = "5m"
max_jwt_svid_ttl  = "5m"
# A revoked task ID is not created again for this long (default
# max_jwt_svid_ttl + 1m; docs/registrar.md).
recreate_quiet_period = "6m"

# Every task action — created, delegated, refused, revoked — as a
# "registrar" record in a hash-chained audit log (optional), checkpoints
# signed with the registrar's SVID; check it with `agentid audit verify`.
audit {
  path       = "/var/log/agentid/registrar-audit.log"
  durability = "batch"
}

# Prometheus metrics at /metrics, liveness at /healthz and readiness at
# /readyz over plain HTTP (optional; absent: not served). Keep it on
# loopback or a monitoring network: it is not authenticated.
metrics {
  listen = "127.0.0.1:9091"
}
