package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// The Merkle tree of a log (format v2): every line of the log, checkpoints
// included, is a leaf of an RFC 6962 tree, leaf index = seq - 1. A
// checkpoint line at seq s carries a C2SP tlog-checkpoint signed note for
// the tree of size s-1 (every line before it), signed with the log's note
// key; the line just before it is a "key" record that binds that note key
// to the writer's X.509-SVID (signed with the SVID's key), so every
// checkpoint's tree contains the statement that vouches for its key.

var hasher = rfc6962.DefaultHasher

var rangeFactory = &compact.RangeFactory{Hash: HashChildren}

// leafBufs are reused buffers for LeafHash's input (rfc6962's hasher
// allocates a hash state per leaf: the writer hashes every line).
var leafBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// LeafHash is the RFC 6962 leaf hash of one log line (without its newline):
// SHA-256(0x00 || line), with the result as its only allocation.
func LeafHash(line []byte) []byte {
	bp := leafBufs.Get().(*[]byte)
	buf := append(append((*bp)[:0], rfc6962.RFC6962LeafHashPrefix), line...)
	sum := sha256.Sum256(buf)
	*bp = buf
	leafBufs.Put(bp)
	out := make([]byte, sha256.Size)
	copy(out, sum[:])
	return out
}

// HashChildren is the RFC 6962 interior node hash, SHA-256(0x01 || l || r),
// with the result as its only allocation.
func HashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return hasher.HashChildren(l, r)
	}
	var buf [1 + 2*sha256.Size]byte
	buf[0] = rfc6962.RFC6962NodeHashPrefix
	copy(buf[1:], l)
	copy(buf[1+sha256.Size:], r)
	sum := sha256.Sum256(buf[:])
	return sum[:]
}

// Origin is the checkpoint origin of the log whose first line is line1:
// "agentid-audit/<first 16 bytes of the line's SHA-256, hex>". It names
// the log for its checkpoints and for witnesses, whatever its file name.
func Origin(line1 []byte) string {
	sum := sha256.Sum256(line1)
	return "agentid-audit/" + hex.EncodeToString(sum[:16])
}

// keyPayload is what the SVID signs in a key record: the note verifier
// key (whose name is the log's origin) and the record's time.
func keyPayload(vkey string, t time.Time) []byte {
	return []byte("agentid-audit-key/v1\n" + vkey + "\n" + t.UTC().Format(time.RFC3339Nano) + "\n")
}

// newNoteKey makes a fresh Ed25519 note key named origin.
func newNoteKey(origin string) (note.Signer, string, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, "", err
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", err
	}
	return s, vkey, nil
}

// checkpointBody is the C2SP tlog-checkpoint body.
func checkpointBody(origin string, size uint64, root []byte) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + b64(root) + "\n"
}

// partialTree computes node hashes from what a writer keeps: the nodes of
// the compact range [0, from) and the leaf hashes from `from` on. Every
// node of an inclusion proof for a leaf at index ≥ from, and of a
// consistency proof from size `from`, is such a node or is computed from
// them (a node inside [0, from) whose parent reaches past `from` is a node
// of the compact range).
type partialTree struct {
	known  map[compact.NodeID][]byte
	from   uint64
	leaves [][]byte
}

func newPartialTree(r *compact.Range, leaves [][]byte) *partialTree {
	p := &partialTree{known: map[compact.NodeID][]byte{}, from: r.End(), leaves: leaves}
	ids := compact.RangeNodes(0, r.End(), nil)
	for i, h := range r.Hashes() {
		p.known[ids[i]] = h
	}
	return p
}

func (p *partialTree) hash(id compact.NodeID) ([]byte, error) {
	if h, ok := p.known[id]; ok {
		return h, nil
	}
	begin, end := id.Coverage()
	if end > p.from+uint64(len(p.leaves)) {
		return nil, fmt.Errorf("node %d/%d is beyond the tree (size %d)", id.Level, id.Index, p.from+uint64(len(p.leaves)))
	}
	if id.Level == 0 {
		if begin < p.from {
			return nil, fmt.Errorf("leaf %d is no longer kept", begin)
		}
		return p.leaves[begin-p.from], nil
	}
	if end <= p.from {
		return nil, fmt.Errorf("node %d/%d is no longer kept", id.Level, id.Index)
	}
	l, err := p.hash(compact.NewNodeID(id.Level-1, id.Index*2))
	if err != nil {
		return nil, err
	}
	r, err := p.hash(compact.NewNodeID(id.Level-1, id.Index*2+1))
	if err != nil {
		return nil, err
	}
	return HashChildren(l, r), nil
}

func (p *partialTree) proof(nodes proof.Nodes) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := p.hash(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return nodes.Rehash(hashes, HashChildren)
}

// inclusion is the proof of leaf index in the tree of size.
func (p *partialTree) inclusion(index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return p.proof(nodes)
}

// consistency is the proof that the tree of size2 extends the one of size1.
func (p *partialTree) consistency(size1, size2 uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return p.proof(nodes)
}

// root is the root hash of the tree of the first size leaves (size ≥ from).
func (p *partialTree) root(size uint64) ([]byte, error) {
	if size == 0 {
		return hasher.EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := p.hash(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

// VerifyInclusion checks that leafHash is at index in the tree of size
// with root.
func VerifyInclusion(index, size uint64, leafHash []byte, proofHashes [][]byte, root []byte) error {
	return proof.VerifyInclusion(hasher, index, size, leafHash, proofHashes, root)
}

// VerifyConsistency checks that the tree (size2, root2) extends (size1, root1).
func VerifyConsistency(size1, size2 uint64, proofHashes [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(hasher, size1, size2, proofHashes, root1, root2)
}

func cloneRange(r *compact.Range) *compact.Range {
	hashes := make([][]byte, len(r.Hashes()))
	copy(hashes, r.Hashes())
	c, err := rangeFactory.NewRange(r.Begin(), r.End(), hashes)
	if err != nil {
		panic(err) // a valid range copies into a valid range
	}
	return c
}

func rangeRoot(r *compact.Range) []byte {
	if r.End() == 0 {
		return hasher.EmptyRoot()
	}
	h, err := r.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	return h
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Witness cosigns checkpoints (package audit/witness has the component and
// an HTTP client).
type Witness interface {
	// Cosign returns the witness's cosignature lines for req.Checkpoint
	// ("— <name> <base64>\n" each, C2SP tlog-cosignature).
	Cosign(ctx context.Context, req *WitnessRequest) ([]byte, error)
}

// WitnessConflictError is a witness's answer that the request's OldSize is
// not the size of the last checkpoint it cosigned for the log: Size is
// (C2SP tlog-witness answers 409 with it). A writer that crashed after the
// witness cosigned a checkpoint but before it wrote the cosigned copy sees
// this; it proves consistency from Size instead and asks again.
type WitnessConflictError struct{ Size uint64 }

func (e *WitnessConflictError) Error() string {
	return fmt.Sprintf("witness: the last checkpoint cosigned for this log has size %d", e.Size)
}

// WitnessRequest asks a witness to cosign a checkpoint. Modelled on C2SP
// tlog-witness's add-checkpoint, with the key binding added: the witness
// learns the log's note key from the key record (the last leaf of the
// checkpoint's tree) and checks the SVID that signed it against its own
// trust bundle at its own time.
type WitnessRequest struct {
	// OldSize is the size of the last checkpoint the writer knows the
	// witness cosigned (0: none) and Consistency the proof from it.
	OldSize     uint64   `json:"old_size"`
	Consistency [][]byte `json:"consistency,omitempty"`
	// Checkpoint is the signed note.
	Checkpoint []byte `json:"checkpoint"`
	// Key is the key record's line, leaf size-1 of the checkpoint's tree,
	// and KeyProof its inclusion proof.
	Key      []byte   `json:"key"`
	KeyProof [][]byte `json:"key_proof"`
}
