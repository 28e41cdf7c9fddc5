package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// ReceiptFormat names the evidence file format.
const ReceiptFormat = "agentid-audit-receipt/v1"

// Receipt is self-contained evidence that one record is in a log: the
// record's line, its inclusion proof in a checkpoint's tree, the
// checkpoint (signed with the log's note key and, when witnessed,
// cosigned), and the key record that binds the note key to the writer's
// SVID (with its certificate chain), with its own inclusion proof. A
// third party checks it with the trust bundle (and the witness's key)
// alone: VerifyReceipt, agentid audit verify-receipt.
type Receipt struct {
	Format     string   `json:"format"`
	Origin     string   `json:"origin"`
	Index      uint64   `json:"index"` // leaf index: seq - 1
	Record     string   `json:"record"`
	Proof      [][]byte `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
	Key        string   `json:"key"`
	KeyProof   [][]byte `json:"key_proof"`
}

// Prove makes the receipt of the record at index (seq - 1) from a log's
// files: against the last witnessed checkpoint that covers it, else the
// last checkpoint that does.
func Prove(files []string, index uint64) (*Receipt, error) {
	v := newVerifier(nil)
	v.collect = &collector{want: index, keys: map[uint64][]byte{}}
	if _, err := v.run(files); err != nil {
		return nil, err
	}
	c := v.collect
	if c.line == nil {
		if index < v.from {
			return nil, fmt.Errorf("audit: the log has no record at index %d: its files start at index %d (retention deleted the lines before)", index, v.from)
		}
		return nil, fmt.Errorf("audit: the log has no record at index %d (it has %d lines)", index, v.size())
	}
	var size uint64
	var text string
	for _, w := range c.witnessed {
		if w.size > index {
			size, text = w.size, w.note
		}
	}
	if text == "" {
		for _, cp := range c.checkpoints {
			if cp.size > index {
				size, text = cp.size, cp.note
			}
		}
	}
	if text == "" {
		return nil, fmt.Errorf("audit: no checkpoint covers index %d yet", index)
	}
	tree := v.tree()
	proof, err := tree.inclusion(index, size)
	if err != nil {
		return nil, err
	}
	keyProof, err := tree.inclusion(size-1, size)
	if err != nil {
		return nil, err
	}
	return &Receipt{Format: ReceiptFormat, Origin: v.sum.Origin, Index: index, Record: string(c.line), Proof: proof,
		Checkpoint: text, Key: string(c.keys[size-1]), KeyProof: keyProof}, nil
}

// collector keeps what Prove needs while a verifier reads the log.
type collector struct {
	want        uint64
	line        []byte
	keys        map[uint64][]byte // key record lines by index
	checkpoints []sizedNote
	witnessed   []sizedNote
}

type sizedNote struct {
	size uint64
	note string
}

func (c *collector) add(index uint64, rec *Record, line []byte) {
	if index == c.want {
		c.line = bytes.Clone(line)
	}
	switch rec.Type {
	case TypeKey:
		c.keys[index] = bytes.Clone(line)
	case TypeCheckpoint:
		if rec.Note != "" {
			c.checkpoints = append(c.checkpoints, sizedNote{index, rec.Note})
		}
	case TypeWitnessed:
		var cp log.Checkpoint
		if _, err := cp.Unmarshal([]byte(rec.Note)); err == nil {
			c.witnessed = append(c.witnessed, sizedNote{cp.Size, rec.Note})
		}
	}
}

// ReceiptResult is what a verified receipt shows.
type ReceiptResult struct {
	Record  Record
	Size    uint64    // the checkpoint's tree size
	Signer  string    // the SPIFFE ID the log's key is bound to
	Time    time.Time // the time the signer's SVID was verified at
	Witness string    // the witness whose cosignature gave Time ("": none)
}

// VerifyReceipt checks a receipt offline: the key record's SVID against
// opts.Bundle and the signer policy, at the time a trusted witness
// cosigned the checkpoint (with opts.WitnessKeys; required then) or else
// at opts.Now; the checkpoint's signature by the bound key; and both
// inclusion proofs.
func VerifyReceipt(r *Receipt, opts VerifyOptions) (*ReceiptResult, error) {
	if r.Format != ReceiptFormat {
		return nil, fmt.Errorf("audit: receipt format %q, want %q", r.Format, ReceiptFormat)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	res := &ReceiptResult{Time: opts.Now}
	if len(opts.WitnessKeys) > 0 {
		v := newVerifier(&opts)
		for _, k := range opts.WitnessKeys {
			wv, err := fnote.NewVerifierForCosignatureV1(k)
			if err != nil {
				return nil, fmt.Errorf("audit: witness key: %w", err)
			}
			v.witnesses = append(v.witnesses, wv)
		}
		t, name, err := v.cosigned([]byte(r.Checkpoint), nil)
		if err != nil {
			return nil, fmt.Errorf("audit: receipt: checkpoint: %w", err)
		}
		res.Time, res.Witness = t, name
	}
	kv, signer, err := VerifyKeyRecord([]byte(r.Key), opts.Bundle, opts.Signers, res.Time)
	if err != nil {
		return nil, fmt.Errorf("audit: receipt: the key record's SVID at %s: %w", res.Time.UTC().Format(time.RFC3339), err)
	}
	res.Signer = signer
	n, err := note.Open([]byte(r.Checkpoint), note.VerifierList(kv))
	if err != nil {
		var u *note.UnverifiedNoteError
		if !errors.As(err, &u) {
			return nil, fmt.Errorf("audit: receipt: checkpoint: %w", err)
		}
		return nil, errors.New("audit: receipt: the checkpoint is not signed by the note key the key record binds")
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(n.Text)); err != nil {
		return nil, fmt.Errorf("audit: receipt: checkpoint: %w", err)
	}
	if c.Origin != kv.Name() || c.Origin != r.Origin {
		return nil, fmt.Errorf("audit: receipt: checkpoint of %q, key of %q, receipt of %q", c.Origin, kv.Name(), r.Origin)
	}
	if c.Size == 0 {
		return nil, errors.New("audit: receipt: empty checkpoint")
	}
	if err := VerifyInclusion(c.Size-1, c.Size, LeafHash([]byte(r.Key)), r.KeyProof, c.Hash); err != nil {
		return nil, fmt.Errorf("audit: receipt: the key record is not in the checkpoint's tree: %w", err)
	}
	if err := VerifyInclusion(r.Index, c.Size, LeafHash([]byte(r.Record)), r.Proof, c.Hash); err != nil {
		return nil, fmt.Errorf("audit: receipt: the record's proof does not match the checkpoint: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(r.Record)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res.Record); err != nil {
		return nil, fmt.Errorf("audit: receipt: record: %w", err)
	}
	if res.Record.Seq != r.Index+1 {
		return nil, fmt.Errorf("audit: receipt: the record has seq %d, not %d", res.Record.Seq, r.Index+1)
	}
	res.Size = c.Size
	return res, nil
}
