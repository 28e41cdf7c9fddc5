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

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// VerifyError names the first line that breaks the log.
type VerifyError struct {
	File   string
	Line   int // 1-based line within File
	Seq    uint64
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: %s:%d (seq %d): %s", e.File, e.Line, e.Seq, e.Reason)
}

// Summary describes a log that verified.
type Summary struct {
	Files       int
	Records     int    // all lines, checkpoints included
	Checkpoints int    // signed checkpoints that verified
	LastSeq     uint64 // sequence number of the last line
	// Unsigned counts the records after the last checkpoint: intact by the
	// hash chain but not yet covered by a signature.
	Unsigned int
	Signers  []string // distinct checkpoint signers, in order of appearance
}

// Verify checks a log spread over files (in chain order, see [Files]):
// every line parses, sequence numbers increase by one, every "prev" is the
// hash of the line before it (across files), and every checkpoint's
// certificate chain verifies against bundle at the checkpoint's time and its
// signature verifies. With a nil bundle, checkpoints are rejected. The error
// is a *VerifyError naming the first broken line.
func Verify(files []string, bundle x509bundle.Source) (Summary, error) {
	v := verifier{bundle: bundle, prev: GenesisPrev}
	for _, f := range files {
		if err := v.file(f); err != nil {
			return Summary{}, err
		}
	}
	v.sum.Files = len(files)
	return v.sum, nil
}

type verifier struct {
	bundle x509bundle.Source
	prev   string
	seq    uint64
	sum    Summary
}

func (v *verifier) file(path string) error {
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
		if err := v.line(sc.Bytes()); err != "" {
			return &VerifyError{File: path, Line: n, Seq: v.seq + 1, Reason: err}
		}
	}
	if err := sc.Err(); err != nil {
		return &VerifyError{File: path, Line: n + 1, Seq: v.seq + 1, Reason: err.Error()}
	}
	return nil
}

func (v *verifier) line(line []byte) string {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return "not a record: " + err.Error()
	}
	switch {
	case rec.Seq != v.seq+1:
		return fmt.Sprintf("sequence number %d, expected %d (a line was removed, reordered or inserted)", rec.Seq, v.seq+1)
	case rec.Prev != v.prev:
		return "prev hash does not match the previous line (the previous line was altered, or this one was moved)"
	}
	if rec.Type == TypeCheckpoint {
		if err := v.checkpoint(&rec); err != nil {
			return "checkpoint: " + err.Error()
		}
		v.sum.Checkpoints++
		v.sum.Unsigned = 0
	} else {
		v.sum.Unsigned++
	}
	v.seq, v.prev = rec.Seq, lineHash(line)
	v.sum.Records++
	v.sum.LastSeq = rec.Seq
	return ""
}

func (v *verifier) checkpoint(rec *Record) error {
	if v.bundle == nil {
		return errors.New("no trust bundle to verify it with")
	}
	certs := make([]*x509.Certificate, 0, len(rec.Chain))
	for _, der := range rec.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	id, _, err := x509svid.Verify(certs, v.bundle, x509svid.WithTime(rec.Time))
	if err != nil {
		return err
	}
	if id.String() != rec.Signer {
		return fmt.Errorf("signer %q but the certificate is %s", rec.Signer, id)
	}
	if err := verifySignature(certs[0], checkpointPayload(rec.Seq, rec.Time, rec.Prev), rec.Signature); err != nil {
		return err
	}
	if !slices.Contains(v.sum.Signers, rec.Signer) {
		v.sum.Signers = append(v.sum.Signers, rec.Signer)
	}
	return nil
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
