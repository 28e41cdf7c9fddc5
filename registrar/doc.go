// Package registrar manages agent tasks as SPIRE registration entries.
//
// A task's identity is one entry, written through SPIRE's Entry API
// (entry/v1) over a gRPC connection the caller provides, typically the SPIRE
// server's local API socket:
//
//   - SPIFFE ID spiffe://<td>/agent/<agent>/task/<task> ([svid.TaskID]);
//   - expires_at = the task's deadline (unix seconds);
//   - selectors of the attestor's type (default "agentid") carrying the
//     task record, each scoped to the task ([svid.Claims.ScopedSelectors]:
//     no selector is shared by two tasks; entries of the older v1 layout,
//     [svid.Claims.Selectors], are still read), plus extra "type:value"
//     selectors the operator asks for;
//   - hint = the SPIFFE ID of the root of the task's delegation chain (its
//     own for a root task), by which a revoke lists the task's tree;
//   - x509_svid_ttl and jwt_svid_ttl no longer than the time left to the
//     deadline nor than the configured maxima.
//
// The SPIRE datastore is the only store: a [Registrar] keeps no state, so
// any number of them can serve one SPIRE server. [Registrar.Create] checks a
// request against an issuance [Policy] (HCL, see docs/registrar.md);
// [Registrar.CreateChild] also reads the parent task's entry and enforces
// attenuation; [Registrar.Revoke] deletes a task and all its descendants,
// listing again until none is left (a child created meanwhile re-checks its
// chain and removes itself). Refusals are *[Error] values whose [Reason] callers branch on.
package registrar
