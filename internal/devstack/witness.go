package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/agentid/agentid/audit/witness"
)

// Witness is the stack's audit witness (Options.Witness): `agentid audit
// witness serve` with its own key, pinned to the registrars' and
// verifiers' SPIFFE IDs. Its fields are read-only.
type Witness struct {
	// URL is its address, http://127.0.0.1:port (audit.witness_url).
	URL string
	// Key is its cosignature verifier key (audit.witness_key, `agentid
	// audit verify --witness-key`); KeyFile holds it.
	Key, KeyFile string
	// StateDir is its state directory (`agentid audit witness latest
	// --state`).
	StateDir string
	// LogPath is its log.
	LogPath string

	proc *Process
}

// Process is the witness's process.
func (w *Witness) Process() *Process { return w.proc }

// writeBundle writes the trust bundle to BundlePath.
func (s *Stack) writeBundle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.BundlePath = s.path("bundle.pem")
	out, err := exec.CommandContext(ctx, filepath.Join(s.SpireBin, SpireServerBin), "bundle", "show", "-socketPath", s.ServerSocket).Output()
	if err != nil {
		return fmt.Errorf("spire-server bundle show: %w", err)
	}
	return os.WriteFile(s.BundlePath, out, 0o644)
}

// startWitness generates the witness's key and starts it on a free port.
func (s *Stack) startWitness(ctx context.Context) error {
	bin := filepath.Join(s.BinDir, AgentidBin)
	if _, err := os.Stat(bin); err != nil {
		return &NotFoundError{Name: AgentidBin, Dirs: []string{s.BinDir}, Hint: binHint}
	}
	skey, vkey, err := witness.GenerateKey("witness.agentid-dev")
	if err != nil {
		return err
	}
	w := &Witness{Key: vkey, KeyFile: s.path("witness", "witness.pub"), StateDir: s.path("witness", "state"),
		LogPath: filepath.Join(s.LogDir, "witness.log")}
	skeyFile := s.path("witness", "witness.key")
	if err := os.WriteFile(skeyFile, []byte(skey+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(w.KeyFile, []byte(vkey+"\n"), 0o644); err != nil {
		return err
	}
	start := time.Now()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a picked port can be taken before the bind
		port, err := FreePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		w.URL = "http://" + addr
		p, err := StartProcess("witness", bin, []string{"audit", "witness", "serve", "--listen", addr,
			"--key-file", skeyFile, "--state", w.StateDir, "--bundle", s.BundlePath,
			"--signer", s.RegistrarID, "--signer", s.VerifierID}, s.env, w.LogPath)
		if err != nil {
			return err
		}
		if err := s.track(p); err != nil {
			return err
		}
		w.proc = p
		if lastErr = p.WaitReady(ctx, StartTimeout, func() error { return dialCheck("tcp", addr) }); lastErr == nil {
			go s.watch(p)
			s.Witness = w
			s.logf("audit witness ready in %v (%s, key %s)", time.Since(start).Round(time.Millisecond), w.URL, w.KeyFile)
			return nil
		}
		_ = p.Stop()
		if !logContains(w.LogPath, "address already in use") {
			break
		}
	}
	return lastErr
}

// auditBlock is a daemon's audit {} block: its log, signed only as id,
// cosigned by the stack's witness when there is one.
func (s *Stack) auditBlock(path, id string, extra string) string {
	b := fmt.Sprintf("audit {\n  path      = %s\n  signer_id = %s\n", q(path), q(id))
	if w := s.Witness; w != nil {
		b += fmt.Sprintf("  witness_url = %s\n  witness_key = %s\n", q(w.URL), q(w.Key))
	}
	return b + extra + "}\n"
}
