// Package server is agentid's task API (proto agentid.registrar.v1) on a
// *registrar.Registrar, and the agentid-registrar daemon around it.
//
// Two listeners, two audiences:
//
//   - the operator socket, a unix socket created 0660 (or 0600): its file
//     permissions are the authentication, as for SPIRE's server socket, and
//     every RPC is served ([Service.OperatorServer], [ListenUnix]);
//   - the agent listener, TCP with SPIFFE mTLS (go-spiffe): any SVID of the
//     trust domain may connect, only DelegateTask is served
//     ([Service.AgentServer]), and the other RPCs answer PermissionDenied
//     "operators only: use the local socket".
//
// DelegateTask's parent is the caller: the SPIFFE ID of its verified
// X.509-SVID or, when the call carries "authorization: Bearer <JWT-SVID>"
// and the service accepts JWT-SVIDs ([WithJWTSVIDs]), the token's subject
// (the bearer then wins over the TLS certificate). The caller must be a
// task of the registrar's trust domain; the registrar reads its record from
// its registration entry, never from the request.
//
// A task ID revoked through the service is not created again — by
// CreateTask, CreateTasks or DelegateTask — for its quiet period
// ([WithQuietPeriod], default [DefaultQuietPeriod]; the daemon's
// recreate_quiet_period): SPIRE's caches may still serve or authorize the
// revoked incarnation until then; nor one its liveness listing (while it
// feeds verifiers) saw leave SPIRE before its expiry — revoked through
// another registrar, the CLI or SPIRE directly. The refusal is
// registrar.ReasonRecentlyRevoked (FailedPrecondition). The service keeps
// this memory in its process only.
//
// Refusals carry the registrar.Reason's gRPC code, a message
// "<reason>: <detail> (rule file:line)" and an errdetails.ErrorInfo in
// [ErrorDomain] ([ReasonOf] reads it back).
//
// [Daemon] runs both from an HCL [Config] ([LoadConfig]): the SPIRE
// server's local API socket, the issuance policy (reloaded on SIGHUP,
// keeping the last good one), the Workload API for the registrar's own SVID
// and bundles and, with a metrics block, Prometheus metrics, /healthz and
// /readyz over HTTP. See docs/registrar.md, section "Daemon".
package server
