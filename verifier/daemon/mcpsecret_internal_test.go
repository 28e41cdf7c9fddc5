package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSecretFileLooksOncePerInterval: the credential file is looked at
// again once secretCheckEvery has passed on the clock, not before.
func TestSecretFileLooksOncePerInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	os.WriteFile(path, []byte("k1\n"), 0o600)
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	sf, err := newSecretFile(path, "Bearer ", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sf.now = clock
	sf.next.Store(now.Add(secretCheckEvery).UnixNano())
	os.WriteFile(path+".new", []byte("k2\n"), 0o600)
	os.Rename(path+".new", path)
	if v := sf.Value(); v != "Bearer k1" {
		t.Fatalf("before the interval: %q", v)
	}
	now = now.Add(secretCheckEvery)
	if v := sf.Value(); v != "Bearer k2" {
		t.Fatalf("after the interval: %q", v)
	}
	if _, err := newSecretFile(filepath.Join(t.TempDir(), "absent"), "", nil); err == nil {
		t.Fatal("a missing file at start is not an error")
	}
}
