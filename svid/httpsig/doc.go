// Package httpsig signs and verifies HTTP requests with a task's X.509-SVID
// key: HTTP Message Signatures (RFC 9421) over @method, @target-uri, the
// Content-Digest of the body (RFC 9530, sha-256) and the Agentid-Svid
// header that carries the SVID's certificate chain (and Content-Type and
// Authorization when the request has them), with the parameters created,
// expires, nonce, keyid, alg and tag="agentid". A verifier finds the
// signature by its tag, not its label.
//
// The agent side is Transport, an http.RoundTripper over a go-spiffe
// x509svid.Source. The verifier side is VerifyRequest, which the agentid
// verifier pipeline runs (verifier.Signatures), and VerifyEvidence, which
// checks a recorded signature offline with nothing but the trust bundle
// (agentid audit verify-receipt).
//
// The profile follows draft-ietf-wimse-http-signature where it applies:
// the request is signed end to end with the workload's key, created,
// expires and nonce are required, the signature is found by its tag, and
// the key travels with the request. It differs in the credential that
// carries the key: an X.509-SVID chain (the one the task already holds)
// instead of a Workload Identity Token, so the tag is "agentid", keyid is
// the certificate's SHA-256 thumbprint, and the target is @target-uri
// (authority included) rather than @path, @query and wimse-aud. The
// differences are listed in docs/signatures.md.
//
// The RFC 9421 core (signature base, algorithms, Signature-Input parsing)
// is tested with RFC 9421's Appendix B test vectors.
package httpsig
