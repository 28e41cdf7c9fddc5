// Package svid is the task-claims contract of agentid: the one record that
// describes an agent task (agent, task, model, prompt digest, scopes,
// principal, delegation chain and deadline) and its three envelopes.
//
//   - Canonical JSON ([Claims.MarshalJSON], [Parse]): keys in contract order,
//     no spaces, at most [MaxJSONSize] bytes. Decoding is strict: duplicate
//     keys, unknown keys, wrong types, invalid UTF-8 and an unknown major
//     version are errors. Unknown keys are rejected rather than kept because
//     a verifier that silently ignored a field it did not understand could
//     grant more than the issuer meant; any new field comes with a new "v".
//   - X.509-SVIDs ([Claims.Extension], [FromCertificate]): one non-critical
//     extension whose value is a DER UTF8String holding the canonical JSON,
//     under [DefaultOID] unless [WithOID] says otherwise.
//   - JWT-SVIDs ([Claims.JWTClaims], [FromJWTClaims]): the "agentid" claim
//     holding the same object and an RFC 8693 "act" claim rendering the
//     delegation chain, current delegator outermost.
//
// A fourth rendering, the SPIRE selectors of the attestor, carries the same
// record through SPIRE registration entries: task-scoped
// ([Claims.ScopedSelectors], what the registrar writes) or the older v1
// layout ([Claims.Selectors]); [FromSelectors] reads both.
//
// Decoding never trusts its input: every decoder returns a *[ValidationError]
// whose [Reason] says what was wrong. Decoding checks the shape of each field;
// [Claims.Validate] checks the claims against the SVID that carried them (the
// SPIFFE ID path, the chain, the trust domains and the deadline).
package svid
