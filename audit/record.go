package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// Record types.
const (
	TypeDecision   = "decision"
	TypeRegistrar  = "registrar"
	TypeCheckpoint = "checkpoint"
	// TypeKey binds the log's note key to the writer's X.509-SVID (format
	// v2): Signer, Chain and Signature over the key and the time.
	TypeKey = "key"
	// TypeWitnessed carries a checkpoint with a witness's cosignature.
	TypeWitnessed = "witnessed"
	// TypeSegment is the first line of every file of a rotated log after
	// the first: the log's Origin and Tree, the Merkle tree state (the
	// compact range of every line before it), so that the file verifies
	// when the files before it were deleted by retention.
	TypeSegment = "segment"
)

// Record is one line of the log. The writer fills Seq, Time (when zero) and
// Prev; the caller fills the rest.
type Record struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`

	// The authenticated peer.
	Peer   string `json:"peer,omitempty"`   // SPIFFE ID
	Serial string `json:"serial,omitempty"` // X.509-SVID serial (hex)
	JWTID  string `json:"jwt_id,omitempty"` // JWT-SVID "jti" or token digest
	// The peer's task claims as canonical JSON; absent for non-task peers.
	Claims json.RawMessage `json:"claims,omitempty"`

	// Subject is an asserted subject (AuthZEN, the PEP's word: no peer was
	// authenticated); Resource the AuthZEN resource, when there is one.
	Subject  *Entity `json:"subject,omitempty"`
	Resource *Entity `json:"resource,omitempty"`

	// What was asked and what was answered.
	Action       *Action  `json:"action,omitempty"`
	Decision     string   `json:"decision,omitempty"` // "allow" or "deny"
	Rules        []string `json:"rules,omitempty"`    // deciding rules, "name (file:line)"
	Reason       string   `json:"reason,omitempty"`
	PolicyDigest string   `json:"policy_digest,omitempty"`
	// Frontend is the verifier front-end that asked (ext_authz, proxy,
	// http, grpc, check_api); Caller the SPIFFE ID of the authenticated
	// client that asked on the peer's behalf (Envoy, a service), if any.
	Frontend string `json:"frontend,omitempty"`
	Caller   string `json:"caller,omitempty"`
	// AgentSig is the agent's signature of the request, when it sent one
	// (see AgentSignature).
	AgentSig *AgentSignature `json:"agent_sig,omitempty"`

	// Checkpoint fields: the signer's SPIFFE ID, its certificate chain
	// (DER) and the signature over the "prev" hash (ASN.1 ECDSA, PKCS#1 v1.5
	// RSA or Ed25519 with SHA-256, per the key type).
	Signer    string   `json:"signer,omitempty"`
	Chain     [][]byte `json:"x5c,omitempty"`
	Signature []byte   `json:"sig,omitempty"`
	// NoteKey is the note verifier key a key record binds (format v2).
	NoteKey string `json:"note_key,omitempty"`
	// Note is the signed checkpoint note of a format v2 checkpoint (for the
	// tree of every line before it), or, in a witnessed record, that note
	// with the witnesses' cosignatures.
	Note string `json:"note,omitempty"`
	// Origin and Tree are a segment record's: the log's checkpoint origin
	// and the hashes of the compact range [0, seq-1) of its Merkle tree.
	Origin string   `json:"origin,omitempty"`
	Tree   [][]byte `json:"tree,omitempty"`

	// peer, when set by SetPeer, holds the encoding of Peer, Serial,
	// JWTID and Claims, used while they are still the ones it was made of.
	peer *PeerFields

	// Prev names the previous line (without its newline) by a hash:
	// "leaf:<hex>", its RFC 6962 leaf hash SHA-256(0x00 || line) — the
	// hash the Merkle tree has of it, what writers write — or
	// "sha256:<hex>", its SHA-256 (logs written before; both verify). The
	// first line of a log has GenesisPrev, the SHA-256 of nothing.
	Prev string `json:"prev"`
}

// PeerFields are a peer's record fields (Record.Peer, Serial, JWTID and
// Claims) with their JSON encoding made once: a caller that records many
// decisions of the same peer (the verifier keeps one per cached peer)
// sets them with Record.SetPeer, and the writer copies their encoding
// instead of encoding them for every record. It is immutable.
type PeerFields struct {
	id, serial, jwtID string
	claims            json.RawMessage
	enc               []byte
}

// NewPeerFields encodes a peer's fields (claims is kept, not copied: the
// caller must not change it).
func NewPeerFields(id, serial, jwtID string, claims json.RawMessage) *PeerFields {
	p := &PeerFields{id: id, serial: serial, jwtID: jwtID, claims: claims}
	p.enc = appendPeer(nil, id, serial, jwtID, nil) // the claims are copied as they are
	return p
}

// SetPeer sets the record's Peer, Serial, JWTID and Claims to p's. The
// encoding made by NewPeerFields is used only while those four fields
// are still p's (the strings compared by value, the claims by identity:
// the same array): a record changed afterwards is encoded field by
// field, the same bytes either way.
func (rec *Record) SetPeer(p *PeerFields) {
	rec.Peer, rec.Serial, rec.JWTID, rec.Claims, rec.peer = p.id, p.serial, p.jwtID, p.claims, p
}

// Action is what the peer asked to do.
type Action struct {
	Kind   string `json:"kind"`
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Name   string `json:"name,omitempty"`
}

// Entity is an AuthZEN subject or resource as recorded: its type and id
// (its properties are not recorded).
type Entity struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// GenesisPrev is the "prev" of a log's first line: the hash of nothing.
var GenesisPrev = lineHash(nil)

// leafPrevPrefix starts a "prev" that names the line before by its leaf
// hash. Writers before it named the line by its SHA-256 ("sha256:"), a
// second hash of every line: the leaf hash is computed for the tree anyway.
const leafPrevPrefix = "leaf:"

// appendLeafPrev appends the "prev" naming the line whose leaf hash is
// leaf.
func appendLeafPrev(b []byte, leaf *[sha256.Size]byte) []byte {
	b = append(b, leafPrevPrefix...)
	return hex.AppendEncode(b, leaf[:])
}

// isLeafPrev says whether prev is "leaf:" and the (lower-case) hex of
// leaf.
func isLeafPrev(prev string, leaf []byte) bool {
	if len(leaf) != sha256.Size {
		return false
	}
	var b [len(leafPrevPrefix) + 2*sha256.Size]byte
	copy(b[:], leafPrevPrefix)
	hex.Encode(b[len(leafPrevPrefix):], leaf)
	return prev == string(b[:])
}

// chainsTo says whether prev, the "prev" of a line after the first, names
// line, the line before it, whose leaf hash is leaf and whose SHA-256
// "prev" is sha (lineHash(line)): either form verifies, each binds the
// line's bytes.
func chainsTo(prev, sha string, leaf []byte) bool {
	return prev == sha || isLeafPrev(prev, leaf)
}

func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	var sb strings.Builder // one allocation: the string itself
	sb.Grow(len("sha256:") + len(hx))
	sb.WriteString("sha256:")
	sb.Write(hx[:])
	return sb.String()
}
