// Package verifier answers, for services that agents call, "is this action
// admissible for this agent task?": it authenticates the peer (an mTLS
// X.509-SVID or a JWT-SVID bearer token, via go-spiffe), decodes and
// validates the task claims (package svid: SPIFFE ID agreement, lineage,
// trust domains, deadline), asks the HCL policy engine for a decision and
// appends it to the audit log.
package verifier
