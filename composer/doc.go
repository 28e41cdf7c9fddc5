// Package composer holds the logic of the agentid CredentialComposer, the
// SPIRE server plugin that adds a task's claims to the SVIDs SPIRE signs for
// it (trust chain step 5 of the architecture). It has no plugin-SDK imports:
// plugins/credentialcomposer adapts it to SPIRE.
//
// SPIRE hands a composer only the SPIFFE ID being signed, so a [Composer]
// reads the task's registration entry from the server's Entry API (an
// [EntrySource]), rebuilds the claims from the entry's selectors and expiry
// ([svid.FromSelectors]), checks them against the SPIFFE ID
// ([svid.Claims.Validate]) and renders them as the X.509 extension or the
// JWT claims of the contract.
//
// Only task SPIFFE IDs (spiffe://<td>/agent/<agent>/task/<task>) are looked
// up ([Applies]); any other ID is none of the composer's business. A task ID
// whose entry is missing, duplicated, expired or undecodable is refused with
// an *[Error]: the composer fails closed.
//
// Every call reads the task's entry (concurrent calls for one ID share a
// single read): a task ID revoked and created again has another entry,
// and the composer, told the SPIFFE ID only, must sign the current one's
// claims. The claims decoded from one version of an entry (entry ID,
// revision, expiry) are reused for [Config].CacheTTL, in a cache bounded to
// [Config].CacheSize entries (least recently used evicted first). The
// deadline is checked on every call, so an expired task is refused at once
// and a revoked one at its next signing.
package composer
