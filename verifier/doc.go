// Package verifier answers, for services that agents call, "is this action
// admissible for this agent task?": it authenticates the peer (an mTLS
// X.509-SVID or a JWT-SVID bearer token, via go-spiffe), decodes and
// validates the task claims (package svid: SPIFFE ID agreement, lineage,
// trust domains, deadline), asks the HCL policy engine for a decision and
// appends it to the audit log.
//
// Long-lived exchanges are held to their peer for their whole life: a gRPC
// stream (Verifier.StreamServerInterceptor) and an upgraded connection
// through the Proxy (Proxy.AllowUpgrades; upgrades are refused without it)
// re-run the authentication stages — liveness included — on every message
// and every StreamRecheckInterval while idle, and end at the peer's expiry
// or its refusal, which is recorded like any other; so do responses the
// Proxy streams (Server-Sent Events, bodies of unknown length).
package verifier
