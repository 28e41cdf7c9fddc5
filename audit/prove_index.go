package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/tlog"
)

// IndexError is ProveIndexed's answer when the tree index cannot give the
// receipt: missing, behind the log, or not matching it (altered). Prove,
// which reads the whole log, still can.
type IndexError struct{ Reason string }

func (e *IndexError) Error() string { return "audit: tree index: " + e.Reason }

func indexErr(format string, args ...any) error {
	return &IndexError{Reason: fmt.Sprintf(format, args...)}
}

// ProveIndexed makes the same receipt as Prove — against the last
// witnessed checkpoint if it covers the record, else the last checkpoint —
// from the log at path (its current file; rotated files are found beside
// it) and its tree index (TreeIndexPath), reading a few lines and about
// 2·log₂(n) hashes instead of the whole log. Nothing is taken from the
// index on trust: the lines are the log's own (found by binary search on
// their sequence numbers), and both inclusion proofs are checked against
// the root of the checkpoint read from the log, so an altered or stale
// index gives an *IndexError, never a receipt that verifies for a record
// the checkpoint does not hold. Unlike Prove it does not check the rest
// of the log's chain: that is `agentid audit verify`'s job.
func ProveIndexed(path string, index uint64) (*Receipt, error) {
	f, err := os.Open(TreeIndexPath(path))
	if err != nil {
		return nil, indexErr("%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, indexErr("%v", err)
	}
	hdr := make([]byte, treeHeader)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, indexErr("%s: %v", f.Name(), err)
	}
	head, err := decodeTreeHead(hdr)
	if err != nil {
		return nil, indexErr("%s: %v", f.Name(), err)
	}
	leaves := storedLeaves((st.Size() - treeHeader) / hashSize)
	// The checkpoint Prove would choose, among those the index covers.
	cpSeq, size, typ := head.ckptSeq, head.ckptSize, TypeCheckpoint
	if head.witSize > index && head.witSeq <= leaves {
		cpSeq, size, typ = head.witSeq, head.witSize, TypeWitnessed
	}
	if size <= index || cpSeq == 0 || cpSeq > leaves || size > leaves {
		return nil, indexErr("no checkpoint it covers (its last: seq %d, size %d; %d leaves) covers index %d", cpSeq, size, leaves, index)
	}
	segs, err := segments(path)
	if err != nil {
		return nil, err
	}
	cpLine, err := lineAt(segs, cpSeq)
	if err != nil {
		return nil, err
	}
	var cp Record
	if err := json.Unmarshal(cpLine, &cp); err != nil || cp.Type != typ || cp.Note == "" {
		return nil, indexErr("line %d of the log is not the %s record it names", cpSeq, typ)
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(cp.Note)); err != nil || c.Size != size {
		return nil, indexErr("the %s record at seq %d is not for tree size %d", typ, cpSeq, size)
	}
	recLine, err := lineAt(segs, index+1)
	if err != nil {
		return nil, err
	}
	if err := chained(segs, index, recLine); err != nil {
		return nil, err
	}
	keyLine, err := lineAt(segs, size)
	if err != nil {
		return nil, err
	}
	read := func(level uint, i uint64) ([]byte, error) {
		h := make([]byte, hashSize)
		_, err := f.ReadAt(h, treeHeader+tlog.StoredHashIndex(int(level), int64(i))*hashSize)
		return h, err
	}
	prf, err := storedInclusion(read, index, size)
	if err != nil {
		return nil, indexErr("%v", err)
	}
	keyPrf, err := storedInclusion(read, size-1, size)
	if err != nil {
		return nil, indexErr("%v", err)
	}
	if err := VerifyInclusion(index, size, LeafHash(recLine), prf, c.Hash); err != nil {
		return nil, indexErr("its proof for index %d does not match the checkpoint of size %d: %v (altered or stale; the next Open of the writer rebuilds it)", index, size, err)
	}
	if err := VerifyInclusion(size-1, size, LeafHash(keyLine), keyPrf, c.Hash); err != nil {
		return nil, indexErr("its proof for the key record does not match the checkpoint of size %d: %v", size, err)
	}
	return &Receipt{Format: ReceiptFormat, Origin: c.Origin, Index: index, Record: string(recLine), Proof: prf,
		Checkpoint: cp.Note, Key: string(keyLine), KeyProof: keyPrf}, nil
}

// chained checks that the record line of index is in the log's hash
// chain where it stands: its prev is the hash of the line before it, and
// the next line's prev is its hash. A checkpoint holds the lines as they
// were when it was signed: a line rewritten and then signed over (a log
// laundered by a writer before Open checked the chain) is refused here.
func chained(segs []segment, index uint64, recLine []byte) error {
	var rec, next struct {
		Prev string `json:"prev"`
	}
	if err := json.Unmarshal(recLine, &rec); err != nil {
		return fmt.Errorf("audit: the line of seq %d: %w", index+1, err)
	}
	ok := rec.Prev == GenesisPrev
	if index > 0 {
		if len(segs) > 0 && segs[0].firstSeq == index+1 {
			ok = true // the line before it was deleted by retention
		} else {
			prevLine, err := lineAt(segs, index)
			if err != nil {
				return err
			}
			ok = chainsTo(rec.Prev, lineHash(prevLine), LeafHash(prevLine))
		}
	}
	if !ok {
		return fmt.Errorf("audit: the line of seq %d does not chain to the line before it (prev hash differs: the log was altered; run agentid audit verify)", index+1)
	}
	nextLine, err := lineAt(segs, index+2)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(nextLine, &next); err != nil {
		return fmt.Errorf("audit: the line of seq %d: %w", index+2, err)
	}
	if !chainsTo(next.Prev, lineHash(recLine), LeafHash(recLine)) {
		return fmt.Errorf("audit: the line of seq %d is not the line the next one chains to (it was altered; run agentid audit verify)", index+1)
	}
	return nil
}

// indexConsistency checks, with a consistency proof from the tree index,
// that the tree the verifier has (of which it computed the root from the
// files) extends the tree of size1 with root1, whose lines were deleted.
func (v *verifier) indexConsistency(size1 uint64, root1 []byte) error {
	f, err := os.Open(v.opts.TreeIndex)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := make([]byte, treeHeader)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return err
	}
	if _, err := decodeTreeHead(hdr); err != nil {
		return err
	}
	size2 := min(v.size(), storedLeaves((st.Size()-treeHeader)/hashSize))
	if size2 < v.from || size2 < size1 {
		return fmt.Errorf("it covers only %d line(s)", size2)
	}
	root2, err := v.tree().root(size2)
	if err != nil {
		return err
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		hashes[i] = make([]byte, hashSize)
		if _, err := f.ReadAt(hashes[i], treeHeader+tlog.StoredHashIndex(int(id.Level), int64(id.Index))*hashSize); err != nil {
			return fmt.Errorf("node %d/%d: %w", id.Level, id.Index, err)
		}
	}
	prf, err := nodes.Rehash(hashes, HashChildren)
	if err != nil {
		return err
	}
	if err := VerifyConsistency(size1, size2, prf, root1, root2); err != nil {
		return fmt.Errorf("its consistency proof from size %d to %d does not verify: %w", size1, size2, err)
	}
	return nil
}

// storedLeaves is the number of leaves whose stored hashes the first
// `hashes` stored hashes hold completely.
func storedLeaves(hashes int64) uint64 {
	lo, hi := int64(0), hashes // StoredHashCount(n) ≥ n
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if tlog.StoredHashCount(mid) <= hashes {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return uint64(lo)
}

// storedInclusion is the inclusion proof of leaf index in the tree of size
// from stored node hashes.
func storedInclusion(read func(level uint, i uint64) ([]byte, error), index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		if hashes[i], err = read(id.Level, id.Index); err != nil {
			return nil, fmt.Errorf("node %d/%d: %w", id.Level, id.Index, err)
		}
	}
	return nodes.Rehash(hashes, HashChildren)
}

// segment is one file of a log and the sequence number of its first line.
type segment struct {
	path     string
	firstSeq uint64
}

// segments lists the files of the log at path with their first sequence
// numbers: a rotated file's is in its name, the current file's is read.
func segments(path string) ([]segment, error) {
	files, err := Files(path)
	if err != nil {
		return nil, err
	}
	out := make([]segment, 0, len(files))
	for _, f := range files {
		if f == path {
			seq, err := firstSeqOf(f)
			if err == io.EOF {
				continue // empty: rotated a moment ago
			}
			if err != nil {
				return nil, err
			}
			out = append(out, segment{f, seq})
			continue
		}
		ext := filepath.Ext(path)
		num := strings.TrimSuffix(strings.TrimPrefix(f, strings.TrimSuffix(path, ext)+"."), ext)
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("audit: %s: %w", f, err)
		}
		out = append(out, segment{f, seq})
	}
	return out, nil
}

func firstSeqOf(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	line, err := br.ReadSlice('\n')
	if err == io.EOF && len(line) == 0 {
		return 0, io.EOF
	}
	seq, ok := lineSeq(line)
	if !ok {
		return 0, fmt.Errorf("audit: %s: the first line has no sequence number", path)
	}
	return seq, nil
}

// lineSeq reads the sequence number a line starts with ({"seq":N,…).
func lineSeq(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`))
	if !ok {
		return 0, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	return seq, err == nil
}

// lineAt finds the line of sequence number seq (without its newline) in
// the segments, by binary search within the file that holds it.
func lineAt(segs []segment, seq uint64) ([]byte, error) {
	i := len(segs) - 1
	for i >= 0 && segs[i].firstSeq > seq {
		i--
	}
	if i < 0 {
		return nil, fmt.Errorf("audit: the log has no line of seq %d (its files start at seq %d)", seq, firstOr(segs))
	}
	f, err := os.Open(segs[i].path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	// lo is the start of a line whose seq is ≤ seq; the line sought
	// starts in [lo, hi).
	lo, hi := int64(0), st.Size()
	buf := make([]byte, 4096)
	for hi-lo > 16<<10 {
		mid := lo + (hi-lo)/2
		start, line, err := lineFrom(f, mid, buf)
		if err != nil || start >= hi {
			hi = mid
			continue
		}
		s, ok := lineSeq(line)
		if !ok {
			return nil, fmt.Errorf("audit: %s: the line at byte %d has no sequence number", segs[i].path, start)
		}
		if s <= seq {
			lo = start
		} else {
			hi = mid
		}
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, lo, st.Size()-lo), 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			break // the end, or a torn last line
		}
		line = line[:len(line)-1]
		s, ok := lineSeq(line)
		if !ok {
			return nil, fmt.Errorf("audit: %s: a line without a sequence number", segs[i].path)
		}
		if s == seq {
			return line, nil
		}
		if s > seq {
			break
		}
	}
	return nil, fmt.Errorf("audit: %s has no line of seq %d", segs[i].path, seq)
}

func firstOr(segs []segment) uint64 {
	if len(segs) == 0 {
		return 0
	}
	return segs[0].firstSeq
}

// lineFrom returns the first complete line that starts at or after off
// (a line starts at 0 or after a newline) and where it starts.
func lineFrom(f *os.File, off int64, buf []byte) (int64, []byte, error) {
	start := off
	if off > 0 {
		// Find the newline at or after off-1.
		pos := off - 1
		for {
			n, err := f.ReadAt(buf, pos)
			if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
				start = pos + int64(i) + 1
				break
			}
			if err != nil {
				return 0, nil, err
			}
			pos += int64(n)
		}
	}
	var line []byte
	for pos := start; ; {
		n, err := f.ReadAt(buf, pos)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return start, append(line, buf[:i]...), nil
		}
		line = append(line, buf[:n]...)
		if err != nil {
			return 0, nil, err
		}
		pos += int64(n)
	}
}
