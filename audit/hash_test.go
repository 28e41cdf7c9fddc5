package audit

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
)

// TestHashesMatchRFC6962: the allocation-light leaf and node hashes are
// rfc6962's, byte for byte.
func TestHashesMatchRFC6962(t *testing.T) {
	for n := range 300 {
		line := make([]byte, n*7)
		rand.Read(line)
		if got, want := LeafHash(line), rfc6962.DefaultHasher.HashLeaf(line); !bytes.Equal(got, want) {
			t.Fatalf("leaf %d: %x, want %x", n, got, want)
		}
		l, r := LeafHash(line), LeafHash(append(line, 1))
		if got, want := HashChildren(l, r), rfc6962.DefaultHasher.HashChildren(l, r); !bytes.Equal(got, want) {
			t.Fatalf("node %d: %x, want %x", n, got, want)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { LeafHash([]byte("a line")) }); allocs > 1 {
		t.Fatalf("LeafHash: %v allocations", allocs)
	}
	l := LeafHash(nil)
	if allocs := testing.AllocsPerRun(100, func() { HashChildren(l, l) }); allocs > 1 {
		t.Fatalf("HashChildren: %v allocations", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { lineHash([]byte("a line")) }); allocs > 1 {
		t.Fatalf("lineHash: %v allocations", allocs)
	}
}
