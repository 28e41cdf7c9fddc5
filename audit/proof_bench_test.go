package audit_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// proofLog is a real log of 10⁶ decisions (tlog v2, signed checkpoints
// every 1000 records), written once per process for BenchmarkProofSize.
var proofLog struct {
	once  sync.Once
	files []string
	opts  audit.VerifyOptions
	err   error
	took  time.Duration
}

const proofLogN = 1_000_000

func writeProofLog(b *testing.B) {
	proofLog.once.Do(func() {
		ca := testca.New(b, td, t0)
		path := filepath.Join(b.TempDir(), "audit.log")
		n := 0
		clk := func() time.Time { n++; return t0.Add(time.Duration(n) * time.Microsecond) }
		start := time.Now()
		w, err := audit.Open(path, audit.Options{Clock: clk, Signer: ca.CreateX509SVID(vid), Durability: audit.SyncNone})
		if err != nil {
			proofLog.err = err
			return
		}
		for i := range proofLogN {
			if err := w.Append(decision(i)); err != nil {
				proofLog.err = err
				return
			}
		}
		if proofLog.err = w.Close(); proofLog.err != nil {
			return
		}
		proofLog.took = time.Since(start)
		proofLog.files, proofLog.err = audit.Files(path)
		proofLog.opts = audit.VerifyOptions{Bundle: ca.X509Bundle(), Now: t0.Add(time.Minute)}
	})
	if proofLog.err != nil {
		b.Fatal(proofLog.err)
	}
}

// checkpointRoot is the size and root hash of a checkpoint note's body
// (C2SP tlog-checkpoint: origin, size, base64 root).
func checkpointRoot(b *testing.B, note string) (uint64, []byte) {
	lines := strings.SplitN(note, "\n", 4)
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil {
		b.Fatal(err)
	}
	return size, root
}

// BenchmarkProofSize (issue 13): proof size and verification time.
//
//   - real-1e6: a log of 10⁶ decisions written by audit.Writer (its tree
//     has ~1,001,000 leaves: the checkpoints' key and checkpoint records are
//     leaves too). audit.Prove (`agentid audit prove`: reads and checks the
//     whole log, then builds the proofs) is timed once, over 10 receipts,
//     and logged with the time to write the log; "verify-receipt" is the
//     offline check of the receipt (audit.VerifyReceipt: the SVID chain,
//     the key record's signature, the signed note, two inclusion proofs),
//     "inclusion" the Merkle part alone (one inclusion proof).
//   - simulated-1e8: no log is written. The proof's length is exact
//     (proof.Inclusion's node count for that index and size); its hashes
//     are random and the root is computed from them, so the timed
//     verification does the same work as for a real proof of that depth.
//     The receipt's size is the 10⁶ receipt's plus the extra hashes.
//
// go test -run '^$' -bench ProofSize -benchtime 200x ./audit/
func BenchmarkProofSize(b *testing.B) {
	var realReceipt int
	var realHashes int
	b.Run("real-1e6", func(b *testing.B) {
		writeProofLog(b)
		b.Logf("writing the log of %d decisions took %v", proofLogN, proofLog.took.Round(time.Millisecond))
		rng := mrand.New(mrand.NewPCG(1, 2))
		// The receipts of 20 records spread over the log.
		var receipts []*audit.Receipt
		start := time.Now()
		for range 10 {
			r, err := audit.Prove(proofLog.files, rng.Uint64N(proofLogN))
			if err != nil {
				b.Fatal(err)
			}
			receipts = append(receipts, r)
		}
		proveTook := time.Since(start) / 10
		b.Logf("audit.Prove (`agentid audit prove`): %v per receipt (mean of 10; it reads and checks the whole log)", proveTook.Round(time.Millisecond))
		data, _ := json.MarshalIndent(receipts[0], "", "  ")
		realReceipt, realHashes = len(data)+1, len(receipts[0].Proof)
		b.Run("verify-receipt", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := audit.VerifyReceipt(receipts[i%len(receipts)], proofLog.opts); err != nil {
					b.Fatal(err)
				}
			}
			reportProof(b, len(receipts[0].Proof), realReceipt)
		})
		b.Run("inclusion", func(b *testing.B) {
			type item struct {
				index, size uint64
				leaf, root  []byte
				proof       [][]byte
			}
			items := make([]item, len(receipts))
			for i, r := range receipts {
				size, root := checkpointRoot(b, r.Checkpoint)
				items[i] = item{r.Index, size, audit.LeafHash([]byte(r.Record)), root, r.Proof}
			}
			for i := 0; b.Loop(); i++ {
				it := &items[i%len(items)]
				if err := audit.VerifyInclusion(it.index, it.size, it.leaf, it.proof, it.root); err != nil {
					b.Fatal(err)
				}
			}
			reportProof(b, len(receipts[0].Proof), realReceipt)
		})
	})
	b.Run("simulated-1e8", func(b *testing.B) {
		const size = 100_000_000
		if realReceipt == 0 {
			b.Skip("needs real-1e6 for the receipt size")
		}
		rng := mrand.New(mrand.NewPCG(3, 4))
		type item struct {
			index       uint64
			leaf, root  []byte
			proofHashes [][]byte
		}
		items := make([]item, 20)
		for i := range items {
			idx := rng.Uint64N(size)
			nodes, err := proof.Inclusion(idx, size)
			if err != nil {
				b.Fatal(err)
			}
			hashes := make([][]byte, len(nodes.IDs))
			for j := range hashes {
				hashes[j] = make([]byte, 32)
				rand.Read(hashes[j])
			}
			// The nodes of a proof at the right edge of an unbalanced tree
			// are hashed into one (as audit's own proofs are).
			if hashes, err = nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren); err != nil {
				b.Fatal(err)
			}
			leaf := audit.LeafHash([]byte(fmt.Sprintf(`{"seq":%d}`, idx+1)))
			root, err := proof.RootFromInclusionProof(rfc6962.DefaultHasher, idx, size, leaf, hashes)
			if err != nil {
				b.Fatal(err)
			}
			items[i] = item{idx, leaf, root, hashes}
		}
		depth := bits.Len64(size - 1) // 27: every proof has at most this many hashes
		// A receipt holds two proofs (the record's and the key record's),
		// each hash a line of 44 base64 characters (MarshalIndent).
		extra := 2 * (depth - realHashes) * (4 + 1 + 44 + 1 + 1 + 1) // indent, quotes, comma, newline
		b.Run("inclusion", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				it := &items[i%len(items)]
				if err := audit.VerifyInclusion(it.index, size, it.leaf, it.proofHashes, it.root); err != nil {
					b.Fatal(err)
				}
			}
			reportProof(b, len(items[0].proofHashes), realReceipt+extra)
		})
		c, _ := proof.Consistency(size/2, size)
		b.Logf("simulated 10^8: inclusion proofs of %d hashes (%d B); consistency proof 5·10^7 → 10^8: %d hashes; receipt ≈ %d B (the 10^6 receipt, %d B, with %d more hashes in each of its two proofs)",
			len(items[0].proofHashes), 32*len(items[0].proofHashes), len(c.IDs), realReceipt+extra, realReceipt, depth-realHashes)
	})
}

func reportProof(b *testing.B, hashes, receiptBytes int) {
	b.ReportMetric(float64(hashes), "proof-hashes")
	b.ReportMetric(float64(32*hashes), "proof-B")
	b.ReportMetric(float64(receiptBytes), "receipt-B")
}

// BenchmarkProve (issue 13): `agentid audit prove` at 10⁶ records, on the
// log of BenchmarkProofSize. "full-read" is audit.Prove (reads and checks
// the whole log: how `audit prove` worked before the tree index, and what
// it falls back to without one), "index" audit.ProveIndexed (the tree
// index the writer keeps beside the log: a few lines found by binary
// search, ~2·log₂(n) stored hashes). Both prove the same random records
// in one run; ns/op is per receipt. The log's reopen (audit.Open, which
// replays the log and checks the index against it) is timed once with and
// once without the index, and logged.
//
// go test -run '^$' -bench 'Prove$' -benchtime 2s ./audit/
func BenchmarkProve(b *testing.B) {
	writeProofLog(b)
	path := proofLog.files[len(proofLog.files)-1]
	for _, noIndex := range []bool{true, false} {
		start := time.Now()
		w, err := audit.Open(path, audit.Options{Durability: audit.SyncNone, NoTreeIndex: noIndex})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if err := w.IndexError(); err != nil {
			b.Fatal(err)
		}
		b.Logf("audit.Open of the 10^6-record log (replay; NoTreeIndex %v): %v", noIndex, time.Since(start).Round(time.Millisecond))
	}
	for _, mode := range []string{"full-read", "index"} {
		b.Run(mode, func(b *testing.B) {
			rng := mrand.New(mrand.NewPCG(5, 6))
			for b.Loop() {
				index := rng.Uint64N(proofLogN)
				var r *audit.Receipt
				var err error
				if mode == "index" {
					r, err = audit.ProveIndexed(path, index)
				} else {
					r, err = audit.Prove(proofLog.files, index)
				}
				if err != nil {
					b.Fatal(err)
				}
				if r.Index != index {
					b.Fatalf("receipt for %d, want %d", r.Index, index)
				}
			}
		})
	}
}
