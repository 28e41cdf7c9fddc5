package audit

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// VerifyError names the first line that breaks the log, or (Line 0) what
// is wrong with the log as a whole.
type VerifyError struct {
	File   string
	Line   int // 1-based line within File; 0: the whole log
	Seq    uint64
	Reason string
}

func (e *VerifyError) Error() string {
	if e.Line == 0 {
		return "audit: " + e.Reason
	}
	return fmt.Sprintf("audit: %s:%d (seq %d): %s", e.File, e.Line, e.Seq, e.Reason)
}

// Formats of a log, as Summary.Format names them.
const (
	FormatV1 = "hash-chain v1"
	FormatV2 = "tlog v2"
	// FormatV1V2 is a log written in v1 and continued by a v2 writer: the
	// tree covers the v1 lines too.
	FormatV1V2 = "hash-chain v1, continued as tlog v2"
)

// Summary describes a log that verified.
type Summary struct {
	Format  string
	Origin  string // the checkpoint origin (every format has one)
	Files   int
	Records int // all lines, checkpoints included
	// Start is the leaf index (seq - 1) of the first line verified: 0,
	// unless retention deleted the files before (their lines are then
	// known only by the tree state a segment record carries, which the
	// first checkpoint after it authenticates).
	Start       uint64 `json:",omitempty"`
	Checkpoints int    // signed checkpoints that verified
	Witnessed   int    // checkpoints cosigned by a trusted witness key
	LastSeq     uint64 // sequence number of the last line
	Root        []byte // tree root of all lines
	Signers     []string
	// Anchor is the checkpoint everything up to which is authenticated:
	// the last one cosigned by a trusted witness, else the last one.
	Anchor *Anchor `json:",omitempty"`
	// Unsigned counts the records (decisions, registrar actions) after
	// the anchor, UnsignedSince is the time the first of them claims.
	Unsigned      int
	UnsignedSince time.Time `json:",omitempty"`
}

// Anchor is the checkpoint a verification rests on.
type Anchor struct {
	Seq    uint64    // of the checkpoint line
	Size   uint64    // tree size it commits to
	Signer string    // the SPIFFE ID its key is bound to
	Time   time.Time // the time its signer's SVID was verified at
	// TimeSource says where Time comes from: "witness <name>" (its
	// cosignature's time) or "verification time".
	TimeSource string
}

// VerifyOptions say whom a log must be signed by.
type VerifyOptions struct {
	// Bundle verifies the checkpoint signers' SVIDs.
	Bundle x509bundle.Source
	// Signers pins the SPIFFE IDs allowed to sign checkpoints. Empty: any
	// SVID of the bundle except task identities (svid.IsTaskID), which are
	// never accepted as signers.
	Signers []spiffeid.ID
	// WitnessKeys are the cosignature/v1 verifier keys of trusted
	// witnesses. With them, the anchor is the last checkpoint one of them
	// cosigned and its signer's SVID is verified at the cosignature's time.
	WitnessKeys []string
	// Witnessed are cosigned checkpoints obtained from the witnesses (not
	// from the log): the log must extend each one.
	Witnessed [][]byte
	// Now is the verification time (default time.Now()): the anchor's
	// SVID is verified at it when no witness key is given, and the
	// unsigned tail's age is measured to it.
	Now time.Time
	// MaxUnsigned and MaxUnsignedAge are the checkpoint policy: at most
	// this many records after the anchor (default 10,000: ten times the
	// default checkpoint_every), the oldest at most this old (default 5
	// minutes: five times the default checkpoint_interval).
	MaxUnsigned    int
	MaxUnsignedAge time.Duration
	// TreeIndex, when set, is the log's tree index (TreeIndexPath): a
	// witnessed checkpoint older than the files given (retention deleted
	// its lines) is then checked by a consistency proof from its hashes to
	// the tree the files give. The index is not trusted: the proof must
	// verify against the checkpoint's root and the root computed here.
	TreeIndex string
}

// Default checkpoint policy of Verify.
const (
	DefaultMaxUnsigned    = 10000
	DefaultMaxUnsignedAge = 5 * time.Minute
)

// VerifyChain checks a log's structure only: every line parses, sequence
// numbers increase by one, every "prev" is the hash of the line before it
// and every v2 checkpoint's tree root matches the lines. It proves nothing
// against someone who can write the file: use Verify.
func VerifyChain(files []string) (Summary, error) {
	v := newVerifier(nil)
	return v.run(files)
}

// Verify checks a log spread over files (in chain order, see [Files])
// against opts: the structure (VerifyChain), every checkpoint's signature
// and signer, the anchor's SVID at a time the log's writer did not choose,
// the witnesses' checkpoints it must extend, and the unsigned tail against
// the checkpoint policy. Errors are *VerifyError.
func Verify(files []string, opts VerifyOptions) (Summary, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.MaxUnsigned == 0 {
		opts.MaxUnsigned = DefaultMaxUnsigned
	}
	if opts.MaxUnsignedAge == 0 {
		opts.MaxUnsignedAge = DefaultMaxUnsignedAge
	}
	v := newVerifier(&opts)
	for _, k := range opts.WitnessKeys {
		wv, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(k))
		if err != nil {
			return Summary{}, fmt.Errorf("audit: witness key %q: %w", k, err)
		}
		v.witnesses = append(v.witnesses, wv)
	}
	sum, err := v.run(files)
	if err != nil {
		return sum, err
	}
	if err := v.finish(); err != nil {
		return v.sum, err
	}
	return v.sum, nil
}

type verifier struct {
	opts      *VerifyOptions // nil: structure only
	witnesses []note.Verifier
	prev      string // the "prev" the next line has: exactly this, or
	prevLeaf  []byte // "leaf:" and the hex of this (nil: the first line)
	seq       uint64
	sum       Summary

	// The tree: rng of every line so far; start the range the first line
	// continues (empty unless retention deleted the lines before it: then
	// from a segment record, from > 0); leaves the hashes from `from` on.
	rng    *compact.Range
	start  *compact.Range
	from   uint64
	leaves [][]byte
	v1, v2 bool

	key      *boundKey            // the last key record
	ckpts    map[uint64]*ckptInfo // v2 checkpoints by tree size
	last     *ckptInfo            // the last checkpoint (v1 or v2)
	wit      *ckptInfo            // the last checkpoint a trusted witness cosigned
	witTime  time.Time
	witName  string
	unknown  []string // cosigners not among the witness keys
	tail     []tailRec
	lastFile string
	collect  *collector // for Prove
}

type tailRec struct {
	index uint64
	time  time.Time
}

// boundKey is a note key and the SVID that bound it (or, for a v1
// checkpoint, the SVID that signed it).
type boundKey struct {
	seq      uint64
	verifier note.Verifier
	certs    []*x509.Certificate
	signer   string
}

type ckptInfo struct {
	seq  uint64
	size uint64
	root []byte
	key  *boundKey
	body string
}

func newVerifier(opts *VerifyOptions) *verifier {
	empty := rangeFactory.NewEmptyRange(0)
	return &verifier{opts: opts, prev: GenesisPrev, ckpts: map[uint64]*ckptInfo{}, rng: empty, start: cloneRange(empty)}
}

// tree is what the verifier has of the tree: the starting range and the
// leaves since.
func (v *verifier) tree() *partialTree { return newPartialTree(v.start, v.leaves) }

// size is the number of leaves of the tree so far.
func (v *verifier) size() uint64 { return v.from + uint64(len(v.leaves)) }

func (v *verifier) run(files []string) (Summary, error) {
	for i, f := range files {
		if err := v.file(f, i > 0, func(leaf []byte) {
			v.leaves = append(v.leaves, leaf)
			v.rng.Append(leaf, nil)
		}, func() []byte { return rangeRoot(v.rng) }); err != nil {
			return Summary{}, err
		}
		v.lastFile = f
	}
	v.sum.Files = len(files)
	v.sum.Root = rangeRoot(v.rng)
	switch {
	case v.v1 && v.v2:
		v.sum.Format = FormatV1V2
	case v.v1:
		v.sum.Format = FormatV1
	default:
		v.sum.Format = FormatV2
	}
	return v.sum, nil
}

func (v *verifier) file(path string, after bool, add func([]byte), root func() []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		leaf := LeafHash(sc.Bytes())
		if err := v.line(sc.Bytes(), leaf, root, n == 1 && after); err != "" {
			return &VerifyError{File: path, Line: n, Seq: v.seq + 1, Reason: err}
		}
		add(leaf)
	}
	if err := sc.Err(); err != nil {
		return &VerifyError{File: path, Line: n + 1, Seq: v.seq + 1, Reason: err.Error()}
	}
	return nil
}

// line checks one line; fileStart: it is the first line of a file after
// the first.
func (v *verifier) line(line, leaf []byte, root func() []byte, fileStart bool) string {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return "not a record: " + err.Error()
	}
	if rec.Type == TypeSegment && v.seq == 0 && rec.Seq > 1 {
		// The first line verified: retention deleted the lines before
		// it. The tree state it carries is the writer's word until the
		// first checkpoint after it, whose root commits to it.
		r, err := rangeFactory.NewRange(0, rec.Seq-1, rec.Tree)
		if err != nil {
			return "segment record: " + err.Error()
		}
		v.rng, v.start, v.from = r, cloneRange(r), rec.Seq-1
		v.seq, v.prev, v.prevLeaf = rec.Seq-1, rec.Prev, nil
		v.sum.Origin, v.sum.Start = rec.Origin, rec.Seq-1
	}
	switch {
	case v.seq == 0 && rec.Seq > 1:
		return fmt.Sprintf("the log starts at seq %d without a segment record: its first file(s) are missing", rec.Seq)
	case fileStart && rec.Seq > v.seq+1:
		return fmt.Sprintf("this file starts at seq %d but the file before it ends at seq %d: the file(s) holding seq %d–%d are missing (a segment was removed from the middle) or the files are out of order", rec.Seq, v.seq, v.seq+1, rec.Seq-1)
	case fileStart && rec.Seq <= v.seq:
		return fmt.Sprintf("this file starts at seq %d, at or before the end of the file before it (seq %d): the files are out of order or one is given twice", rec.Seq, v.seq)
	case rec.Seq != v.seq+1:
		return fmt.Sprintf("sequence number %d, expected %d (a line was removed, reordered or inserted)", rec.Seq, v.seq+1)
	case rec.Prev != v.prev && (v.prevLeaf == nil || !isLeafPrev(rec.Prev, v.prevLeaf)):
		return "prev hash does not match the previous line (the previous line was altered, or this one was moved)"
	}
	if rec.Seq == 1 {
		v.sum.Origin = Origin(line)
	}
	index := rec.Seq - 1
	switch rec.Type {
	case TypeCheckpoint:
		var err error
		if rec.Note == "" {
			v.v1 = true
			err = v.checkpointV1(&rec)
		} else {
			v.v2 = true
			err = v.checkpointV2(&rec, index, root())
		}
		if err != nil {
			return "checkpoint: " + err.Error()
		}
		v.sum.Checkpoints++
	case TypeKey:
		if err := v.keyRecord(&rec); err != nil {
			return "key record: " + err.Error()
		}
	case TypeWitnessed:
		if err := v.witnessed(&rec); err != nil {
			return "witnessed checkpoint: " + err.Error()
		}
	case TypeSegment:
		if rec.Origin != v.sum.Origin || !slices.EqualFunc(rec.Tree, v.rng.Hashes(), bytes.Equal) {
			return "segment record: its tree state does not match the lines before it (altered, or from another log)"
		}
	default:
		v.tail = append(v.tail, tailRec{index, rec.Time})
	}
	if v.collect != nil {
		v.collect.add(index, &rec, line)
	}
	// The next line names this one by its SHA-256 or by its leaf hash.
	v.seq, v.prev, v.prevLeaf = rec.Seq, lineHash(line), leaf
	v.sum.Records++
	v.sum.LastSeq = rec.Seq
	return ""
}

// svidAt verifies a certificate chain against the bundle at t and the
// signer policy.
func (v *verifier) svidAt(chain [][]byte, signer string, t time.Time) ([]*x509.Certificate, error) {
	if v.opts.Bundle == nil {
		return nil, errors.New("no trust bundle to verify it with")
	}
	certs := make([]*x509.Certificate, 0, len(chain))
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	id, _, err := x509svid.Verify(certs, v.opts.Bundle, x509svid.WithTime(t))
	if err != nil {
		return nil, err
	}
	if id.String() != signer {
		return nil, fmt.Errorf("signer %q but the certificate is %s", signer, id)
	}
	if err := v.signerAllowed(id); err != nil {
		return nil, err
	}
	if !slices.Contains(v.sum.Signers, signer) {
		v.sum.Signers = append(v.sum.Signers, signer)
	}
	return certs, nil
}

func (v *verifier) signerAllowed(id spiffeid.ID) error {
	if len(v.opts.Signers) > 0 {
		if !slices.Contains(v.opts.Signers, id) {
			return fmt.Errorf("signed by %s, which is not a pinned signer (--signer %s)", id, joinIDs(v.opts.Signers))
		}
		return nil
	}
	if svid.IsTaskID(id) {
		return fmt.Errorf("signed by %s, an agent task's SVID: task identities are never accepted as log signers (pin the writer with --signer)", id)
	}
	return nil
}

func joinIDs(ids []spiffeid.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}

func (v *verifier) checkpointV1(rec *Record) error {
	if v.opts == nil {
		v.last = &ckptInfo{seq: rec.Seq}
		return nil
	}
	// The chain is checked at the time the checkpoint claims here; the
	// anchor is checked again at a time the writer did not choose.
	certs, err := v.svidAt(rec.Chain, rec.Signer, rec.Time)
	if err != nil {
		return err
	}
	if err := verifySignature(certs[0], checkpointPayload(rec.Seq, rec.Time, rec.Prev), rec.Signature); err != nil {
		return err
	}
	v.last = &ckptInfo{seq: rec.Seq, size: rec.Seq - 1, key: &boundKey{seq: rec.Seq, certs: certs, signer: rec.Signer}}
	return nil
}

func (v *verifier) keyRecord(rec *Record) error {
	kv, err := note.NewVerifier(rec.NoteKey)
	if err != nil {
		return fmt.Errorf("note key: %w", err)
	}
	if kv.Name() != v.sum.Origin {
		return fmt.Errorf("binds a key for log %q, but this log is %q", kv.Name(), v.sum.Origin)
	}
	k := &boundKey{seq: rec.Seq, verifier: kv, signer: rec.Signer}
	if v.opts != nil {
		if k.certs, err = v.svidAt(rec.Chain, rec.Signer, rec.Time); err != nil {
			return err
		}
		if err := verifySignature(k.certs[0], keyPayload(rec.NoteKey, rec.Time), rec.Signature); err != nil {
			return err
		}
	}
	v.key = k
	return nil
}

func (v *verifier) checkpointV2(rec *Record, size uint64, root []byte) error {
	if v.key == nil || v.key.seq != rec.Seq-1 {
		return errors.New("not preceded by the key record that binds its note key")
	}
	n, err := note.Open([]byte(rec.Note), note.VerifierList(v.key.verifier))
	if err != nil {
		return fmt.Errorf("note not signed by the log's key bound at seq %d: %w", v.key.seq, err)
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(n.Text)); err != nil {
		return err
	}
	switch {
	case c.Origin != v.sum.Origin:
		return fmt.Errorf("origin %q, but this log is %q", c.Origin, v.sum.Origin)
	case c.Size != size:
		return fmt.Errorf("tree size %d, but %d lines precede it", c.Size, size)
	case !bytes.Equal(c.Hash, root):
		return errors.New("root hash does not match the lines before it (they were altered)")
	}
	info := &ckptInfo{seq: rec.Seq, size: size, root: root, key: v.key, body: n.Text}
	v.ckpts[size] = info
	v.last = info
	return nil
}

// witnessed checks a cosigned checkpoint in the log: the log's own
// checkpoint of that size, and the cosignatures by trusted witnesses.
func (v *verifier) witnessed(rec *Record) error {
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(rec.Note)); err != nil {
		return err
	}
	if c.Size < v.from {
		// Cosigned after its checkpoint's file was deleted by retention:
		// nothing here to check it against; later checkpoints cover it.
		return nil
	}
	info := v.ckpts[c.Size]
	if info == nil || !strings.HasPrefix(rec.Note, info.body) {
		return fmt.Errorf("size %d is not a checkpoint of this log", c.Size)
	}
	t, name, err := v.cosigned([]byte(rec.Note), info.key.verifier)
	if err != nil {
		return err
	}
	if name != "" && info.size >= v.witSize() {
		v.wit, v.witTime, v.witName = info, t, name
		v.sum.Witnessed++
	}
	return nil
}

func (v *verifier) witSize() uint64 {
	if v.wit == nil {
		return 0
	}
	return v.wit.size
}

// cosigned opens a cosigned checkpoint and returns the earliest time a
// trusted witness cosigned it ("" name: none did). logKey, when set, must
// have signed it too.
func (v *verifier) cosigned(text []byte, logKey note.Verifier) (time.Time, string, error) {
	vs := slices.Clone(v.witnesses)
	if logKey != nil {
		vs = append(vs, logKey)
	}
	n, err := note.Open(text, note.VerifierList(vs...))
	if err != nil {
		var u *note.UnverifiedNoteError
		if errors.As(err, &u) && logKey == nil {
			return time.Time{}, "", v.unknownWitness(u.Note)
		}
		return time.Time{}, "", err
	}
	if logKey != nil && !slices.ContainsFunc(n.Sigs, func(s note.Signature) bool { return s.Hash == logKey.KeyHash() && s.Name == logKey.Name() }) {
		return time.Time{}, "", errors.New("not signed by the log's key")
	}
	var first time.Time
	name := ""
	for _, s := range n.Sigs {
		if logKey != nil && s.Hash == logKey.KeyHash() && s.Name == logKey.Name() {
			continue
		}
		t, err := fnote.CoSigV1Timestamp(s)
		if err != nil {
			return time.Time{}, "", fmt.Errorf("cosignature by %s: %w", s.Name, err)
		}
		if name == "" || t.Before(first) {
			first, name = t, s.Name
		}
	}
	for _, s := range n.UnverifiedSigs {
		if !slices.Contains(v.unknown, s.Name) {
			v.unknown = append(v.unknown, s.Name)
		}
	}
	return first, name, nil
}

func (v *verifier) unknownWitness(n *note.Note) error {
	var names []string
	for _, s := range n.UnverifiedSigs {
		names = append(names, s.Name)
	}
	return fmt.Errorf("cosigned only by unknown key(s) %s, not by a trusted witness key", strings.Join(names, ", "))
}

// finish checks what only the whole log shows: that it is signed at all,
// the anchor's SVID at a trusted time, the witnesses' checkpoints and the
// unsigned tail.
func (v *verifier) finish() error {
	o := v.opts
	fail := func(format string, args ...any) error {
		return &VerifyError{File: v.lastFile, Seq: v.sum.LastSeq, Reason: fmt.Sprintf(format, args...)}
	}
	if v.last == nil {
		return fail("no signed checkpoint: nothing binds the %d record(s) to a signer (the log was rewritten without its checkpoints, or written without an SVID)", v.sum.Records)
	}
	anchor := v.last
	var at time.Time
	source := "verification time"
	if len(v.witnesses) > 0 {
		for _, ext := range o.Witnessed {
			if err := v.external(ext); err != nil {
				return fail("%s", err)
			}
		}
		if v.wit == nil {
			msg := "no checkpoint cosigned by a trusted witness key"
			if len(v.unknown) > 0 {
				msg += "; cosignatures by unknown key(s) " + strings.Join(v.unknown, ", ") + " were not counted"
			}
			return fail("%s", msg)
		}
		anchor, at, source = v.wit, v.witTime, "witness "+v.witName
	} else {
		if len(o.Witnessed) > 0 {
			return fail("witnessed checkpoints given without a witness key to verify them")
		}
		at = o.Now
	}
	if _, err := v.svidAt(chainOf(anchor.key.certs), anchor.key.signer, at); err != nil {
		if source == "verification time" {
			return fail("the last checkpoint (seq %d) is signed by a key whose SVID (%s) is not valid at the verification time %s: %v; without a witness cosignature (--witness-key) nothing shows it was signed earlier — the time the log claims is the writer's word", anchor.seq, anchor.key.signer, at.UTC().Format(time.RFC3339), err)
		}
		return fail("the checkpoint of size %d, cosigned by %s at %s, is signed by a key whose SVID (%s) was not valid then: %v (re-signed with an expired or not yet valid SVID)", anchor.size, v.witName, at.UTC().Format(time.RFC3339), anchor.key.signer, err)
	}
	v.sum.Anchor = &Anchor{Seq: anchor.seq, Size: anchor.size, Signer: anchor.key.signer, Time: at, TimeSource: source}
	for _, t := range v.tail {
		if t.index >= anchor.size {
			if v.sum.Unsigned == 0 {
				v.sum.UnsignedSince = t.time
			}
			v.sum.Unsigned++
		}
	}
	if v.sum.Unsigned > 0 {
		age := o.Now.Sub(v.sum.UnsignedSince)
		if v.sum.Unsigned > o.MaxUnsigned || age > o.MaxUnsignedAge {
			return fail("unsigned tail: the last %d record(s), the oldest from %s (%s ago), follow the last %scheckpoint; the checkpoint policy allows %d record(s) and %s (--max-unsigned, --max-unsigned-age)",
				v.sum.Unsigned, v.sum.UnsignedSince.UTC().Format(time.RFC3339), age.Round(time.Second), map[bool]string{true: "witnessed ", false: ""}[len(v.witnesses) > 0], o.MaxUnsigned, o.MaxUnsignedAge)
		}
	}
	return nil
}

// external checks a cosigned checkpoint from the witness: the log must
// extend it. It may become the anchor.
func (v *verifier) external(text []byte) error {
	t, name, err := v.cosigned(text, nil)
	if err != nil {
		return fmt.Errorf("the witnessed checkpoint: %w", err)
	}
	if name == "" {
		return errors.New("the witnessed checkpoint is not cosigned by a trusted witness key")
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal(text); err != nil {
		return fmt.Errorf("the witnessed checkpoint: %w", err)
	}
	when := t.UTC().Format(time.RFC3339)
	switch {
	case c.Origin != v.sum.Origin:
		return fmt.Errorf("the witnessed checkpoint is for log %q but this log is %q (its first line differs: rewritten, or another log)", c.Origin, v.sum.Origin)
	case c.Size > v.size():
		return fmt.Errorf("the log was cut: it has %d line(s), but %s cosigned a checkpoint of %d at %s", v.size(), name, c.Size, when)
	case c.Size < v.from:
		// Its lines were deleted by retention: only a consistency proof
		// from the tree index can show this log extends it.
		msg := fmt.Sprintf("the checkpoint %s cosigned at %s (size %d) is older than the files given, which start at seq %d (retention deleted the lines before)", name, when, c.Size, v.from+1)
		if v.opts.TreeIndex == "" {
			return fmt.Errorf("%s: give a later one (agentid audit witness latest), or the log's tree index", msg)
		}
		if err := v.indexConsistency(c.Size, c.Hash); err != nil {
			return fmt.Errorf("%s, and the tree index does not show this log extends it: %w", msg, err)
		}
		return nil
	}
	root, err := v.tree().root(c.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, c.Hash) {
		return fmt.Errorf("the log does not extend the checkpoint %s cosigned at %s: its first %d line(s) differ (rewritten, or a fork)", name, when, c.Size)
	}
	if info := v.ckpts[c.Size]; info != nil && c.Size >= v.witSize() && (v.wit == nil || c.Size > v.wit.size || t.Before(v.witTime)) {
		v.wit, v.witTime, v.witName = info, t, name
	}
	return nil
}

func chainOf(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

func verifySignature(cert *x509.Certificate, payload, sig []byte) error {
	digest := sha256.Sum256(payload)
	ok := false
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, digest[:], sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, payload, sig)
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	if !ok {
		return errors.New("signature does not verify")
	}
	return nil
}

// VerifyKeyRecord checks a key record line for a witness: the SVID that
// signed it against bundle at `at` (the witness's own time) and the signer
// policy (signers pinned, else no task identity), and its signature. It
// returns the note verifier the record binds and the signer.
func VerifyKeyRecord(line []byte, bundle x509bundle.Source, signers []spiffeid.ID, at time.Time) (note.Verifier, string, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return nil, "", fmt.Errorf("not a record: %w", err)
	}
	if rec.Type != TypeKey {
		return nil, "", fmt.Errorf("a %q record, not a key record", rec.Type)
	}
	kv, err := note.NewVerifier(rec.NoteKey)
	if err != nil {
		return nil, "", fmt.Errorf("note key: %w", err)
	}
	v := newVerifier(&VerifyOptions{Bundle: bundle, Signers: signers})
	certs, err := v.svidAt(rec.Chain, rec.Signer, at)
	if err != nil {
		return nil, "", err
	}
	if err := verifySignature(certs[0], keyPayload(rec.NoteKey, rec.Time), rec.Signature); err != nil {
		return nil, "", err
	}
	return kv, rec.Signer, nil
}
