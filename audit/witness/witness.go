// Package witness is a witness for agentid decision logs: it checks that
// each checkpoint a log's writer sends extends the last one it cosigned
// for that log (C2SP tlog-witness, consistency proof from the old size),
// that the note key which signed it is bound by a key record (in the
// checkpoint's tree: inclusion proof) to an SVID its own trust bundle
// vouches for at its own time and that is an allowed signer, and cosigns
// it with its own Ed25519 key and time (C2SP tlog-cosignature,
// cosignature/v1). It keeps the last cosigned checkpoint of every log in
// its state directory, where auditors fetch it (agentid audit witness
// latest) to prove that a log they are handed was not cut, rewritten or
// forked after it.
//
// A log is witnessed from the first checkpoint the witness sees for its
// origin (trust on first use); from then on it only cosigns extensions.
package witness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// GenerateKey makes a witness key named name: the signer key (keep it
// secret) and the cosignature/v1 verifier key (give it to auditors:
// agentid audit verify --witness-key).
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", err
	}
	vkey, err = fnote.VKeyToCosignatureV1(vkey)
	return skey, vkey, err
}

// Config configures a Witness.
type Config struct {
	// Key is the witness's signer key (GenerateKey).
	Key string
	// StateDir keeps the last cosigned checkpoint of each log.
	StateDir string
	// Bundle verifies the SVIDs that bind the logs' note keys.
	Bundle x509bundle.Source
	// Signers pins the writers' SPIFFE IDs; empty: any SVID of the bundle
	// but task identities.
	Signers []spiffeid.ID
	// Clock is the witness's time (default time.Now); the cosignature
	// carries the time of the system clock (cosignature/v1).
	Clock func() time.Time
}

// Witness cosigns checkpoints. It is safe for concurrent use.
type Witness struct {
	cfg    Config
	signer note.Signer
	mu     sync.Mutex
}

// New makes a witness.
func New(cfg Config) (*Witness, error) {
	s, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(cfg.Key))
	if err != nil {
		return nil, fmt.Errorf("witness: key: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	return &Witness{cfg: cfg, signer: s}, nil
}

// ConflictError: the request's old size is not the witness's last size
// for the log (C2SP tlog-witness answers 409 with it); the writer
// (audit.Writer) asks again with a consistency proof from that size.
type ConflictError = audit.WitnessConflictError

// RefusedError: the checkpoint does not verify; the witness will not
// cosign it.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "witness: refused: " + e.Reason }

func refuse(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// Add verifies req and returns the witness's cosignature line.
func (w *Witness) Add(req *audit.WitnessRequest) ([]byte, error) {
	kv, signer, err := audit.VerifyKeyRecord(req.Key, w.cfg.Bundle, w.cfg.Signers, w.cfg.Clock())
	if err != nil {
		return nil, refuse("key binding: %v", err)
	}
	n, err := note.Open(req.Checkpoint, note.VerifierList(kv))
	if err != nil {
		return nil, refuse("checkpoint not signed by the note key %s bound by %s: %v", kv.Name(), signer, err)
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(n.Text)); err != nil {
		return nil, refuse("checkpoint: %v", err)
	}
	if c.Origin != kv.Name() || c.Size == 0 {
		return nil, refuse("checkpoint of %q (size %d) signed by the key of %q", c.Origin, c.Size, kv.Name())
	}
	if err := audit.VerifyInclusion(c.Size-1, c.Size, audit.LeafHash(req.Key), req.KeyProof, c.Hash); err != nil {
		return nil, refuse("the key record is not the last leaf of the checkpoint's tree: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	old, err := w.Latest(c.Origin)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var oc log.Checkpoint
	if old != nil {
		if _, err := oc.Unmarshal(old); err != nil {
			return nil, fmt.Errorf("witness: state of %s: %w", c.Origin, err)
		}
	}
	if req.OldSize != oc.Size || c.Size < oc.Size {
		return nil, &ConflictError{Size: oc.Size}
	}
	if oc.Size > 0 {
		if err := audit.VerifyConsistency(oc.Size, c.Size, req.Consistency, oc.Hash, c.Hash); err != nil {
			return nil, refuse("checkpoint of size %d does not extend the one of size %d cosigned before (a fork or a rewrite): %v", c.Size, oc.Size, err)
		}
	}
	signed, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		return nil, err
	}
	sig := signed[len(n.Text)+1:] // the text, a blank line, the signature line
	state := append(bytes.Clone(req.Checkpoint), sig...)
	if err := writeAtomic(w.statePath(c.Origin), state); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	return sig, nil
}

// Latest is the last checkpoint cosigned for origin (with the log's
// signature and the witness's cosignature).
func (w *Witness) Latest(origin string) ([]byte, error) {
	return os.ReadFile(w.statePath(origin))
}

// StatePath is where a witness with state directory dir keeps origin's
// last cosigned checkpoint.
func StatePath(dir, origin string) string {
	sum := sha256.Sum256([]byte(origin))
	return filepath.Join(dir, hex.EncodeToString(sum[:16])+".checkpoint")
}

func (w *Witness) statePath(origin string) string { return StatePath(w.cfg.StateDir, origin) }

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Handler serves POST /add-checkpoint (a JSON audit.WitnessRequest; the
// answer is the cosignature line, 409 with the witness's size on a
// conflict, 403 when refused) and GET /checkpoint?origin=O.
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", func(rw http.ResponseWriter, r *http.Request) {
		var req audit.WitnessRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		sig, err := w.Add(&req)
		var ce *ConflictError
		var re *RefusedError
		switch {
		case errors.As(err, &ce):
			rw.Header().Set("Content-Type", "text/x.tlog.size")
			rw.WriteHeader(http.StatusConflict)
			fmt.Fprintf(rw, "%d\n", ce.Size)
		case errors.As(err, &re):
			http.Error(rw, err.Error(), http.StatusForbidden)
		case err != nil:
			http.Error(rw, err.Error(), http.StatusInternalServerError)
		default:
			rw.Write(sig)
		}
	})
	mux.HandleFunc("GET /checkpoint", func(rw http.ResponseWriter, r *http.Request) {
		data, err := w.Latest(r.URL.Query().Get("origin"))
		if err != nil {
			http.Error(rw, "no checkpoint for this origin", http.StatusNotFound)
			return
		}
		rw.Write(data)
	})
	return mux
}

// Client asks a witness over HTTP; it is an audit.Witness.
type Client struct {
	URL  string // e.g. http://witness.example:8480
	HTTP *http.Client

	verifier note.Verifier // NewClient's key: cosignatures must verify with it
}

// Cosign implements audit.Witness.
func (c *Client) Cosign(ctx context.Context, req *audit.WitnessRequest) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if c.verifier != nil {
			if _, err := note.Open(append(bytes.Clone(req.Checkpoint), data...), note.VerifierList(c.verifier)); err != nil {
				return nil, fmt.Errorf("witness %s: the answer is not a cosignature by %s: %w", c.URL, c.verifier.Name(), err)
			}
		}
		return data, nil
	case http.StatusConflict:
		size, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		return nil, &ConflictError{Size: size}
	default:
		return nil, fmt.Errorf("witness %s: %s: %s", c.URL, resp.Status, strings.TrimSpace(string(data)))
	}
}

// NewClient is the client a writer's configuration names: the witness's
// base URL (http or https) and, when given, its cosignature/v1 verifier
// key (agentid audit witness keygen), so that only its cosignatures are
// written to the log.
func NewClient(url, key string) (*Client, error) {
	u, err := neturl.Parse(url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("witness_url %q: want http(s)://host[:port]", url)
	}
	c := &Client{URL: url}
	if key != "" {
		if c.verifier, err = fnote.NewVerifierForCosignatureV1(strings.TrimSpace(key)); err != nil {
			return nil, fmt.Errorf("witness_key %q: want a cosignature/v1 verifier key (agentid audit witness keygen): %w", key, err)
		}
	}
	return c, nil
}

// WriterSettings are a daemon's audit block settings for its log's writer.
type WriterSettings struct {
	SignerID spiffeid.ID // signer_id (zero: any SVID the daemon has)
	Client   *Client     // witness_url, witness_key (nil: no witness)
	BadKey   string      // on error: the key at fault
}

// ParseWriterSettings checks an audit block's signer_id, witness_url and
// witness_key (the verifier's and the registrar's); an error names the
// key in BadKey, for its position in the file.
func ParseWriterSettings(signerID, witnessURL, witnessKey string) (WriterSettings, error) {
	var ws WriterSettings
	if signerID != "" {
		id, err := spiffeid.FromString(signerID)
		if err != nil {
			ws.BadKey = "signer_id"
			return ws, fmt.Errorf("audit.signer_id %q: %w", signerID, err)
		}
		if svid.IsTaskID(id) {
			ws.BadKey = "signer_id"
			return ws, fmt.Errorf("audit.signer_id %q is an agent task's identity: task SVIDs never sign logs", signerID)
		}
		ws.SignerID = id
	}
	if witnessKey != "" && witnessURL == "" {
		ws.BadKey = "witness_key"
		return ws, errors.New("audit.witness_key needs witness_url")
	}
	if witnessURL == "" {
		return ws, nil
	}
	if _, err := NewClient(witnessURL, ""); err != nil {
		ws.BadKey = "witness_url"
		return ws, fmt.Errorf("audit.%w", err)
	}
	c, err := NewClient(witnessURL, witnessKey)
	if err != nil {
		ws.BadKey = "witness_key"
		return ws, fmt.Errorf("audit.%w", err)
	}
	ws.Client = c
	return ws, nil
}
