package audit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/tlog"
)

// The tree index: a file beside the log, <path>.tree, that the Writer
// keeps so that `agentid audit prove` need not read the whole log. It
// holds every node hash of the log's Merkle tree that a complete subtree
// has, in the stored-hash order of golang.org/x/mod/sumdb/tlog (the
// layout C2SP tlog-tiles are cut from: node (level L, index i) is hash
// number tlog.StoredHashIndex(L, i), about two hashes per leaf), after a
// 64-byte header that names the last checkpoint and the last witnessed
// checkpoint it covers. An inclusion proof then costs about log₂(n) reads
// of 32 bytes, and the lines it needs are found by binary search on their
// sequence numbers.
//
// The index is never trusted: the Writer checks (and rewrites from the
// first difference) every hash it holds for the lines of the log at Open,
// and writes it after the log's lines are durable without syncing it (a
// crash leaves it behind or torn; the next Open repairs it). ProveIndexed
// checks every proof it builds against the root of the signed checkpoint
// it read from the log itself, so an index that was altered gives an
// error, never a receipt for something the checkpoint does not hold.
// Retention does not shorten it: the hashes of deleted segments stay (no
// record content, ~64 bytes per record), and proofs for retained records
// need only the tree state a segment header carries.

const (
	treeMagic  = "agentid-tree/v1\n"
	treeHeader = 64
	hashSize   = 32
)

// treeHead is what the index header records: the sequence number and tree
// size of the last checkpoint and of the last witnessed checkpoint among
// the lines it covers (0: none).
type treeHead struct {
	ckptSeq, ckptSize uint64
	witSeq, witSize   uint64
}

func (h treeHead) encode() []byte {
	b := make([]byte, treeHeader)
	copy(b, treeMagic)
	binary.BigEndian.PutUint64(b[16:], h.ckptSeq)
	binary.BigEndian.PutUint64(b[24:], h.ckptSize)
	binary.BigEndian.PutUint64(b[32:], h.witSeq)
	binary.BigEndian.PutUint64(b[40:], h.witSize)
	return b
}

func decodeTreeHead(b []byte) (treeHead, error) {
	if len(b) < treeHeader || string(b[:16]) != treeMagic {
		return treeHead{}, errors.New("not a tree index (bad header)")
	}
	return treeHead{
		ckptSeq: binary.BigEndian.Uint64(b[16:]), ckptSize: binary.BigEndian.Uint64(b[24:]),
		witSeq: binary.BigEndian.Uint64(b[32:]), witSize: binary.BigEndian.Uint64(b[40:]),
	}, nil
}

// Leaf kinds the index header follows.
const (
	leafRecord byte = iota
	leafCheckpoint
	leafWitnessed
)

// leafKind is what the index header follows of a line: for a checkpoint
// or witnessed line, the tree size its note commits to.
func leafKind(typ, noteText string, index uint64) (byte, uint64) {
	switch typ {
	case TypeCheckpoint:
		if noteText != "" { // a v1 checkpoint has no tree
			return leafCheckpoint, index
		}
	case TypeWitnessed:
		var c log.Checkpoint
		if _, err := c.Unmarshal([]byte(noteText)); err == nil {
			return leafWitnessed, c.Size
		}
	}
	return leafRecord, 0
}

// idxMark is a checkpoint or witnessed line among the leaves not yet in
// the index.
type idxMark struct {
	kind      byte
	seq, size uint64
}

func (h *treeHead) note(kind byte, seq, size uint64) {
	switch kind {
	case leafCheckpoint:
		h.ckptSeq, h.ckptSize = seq, size
	case leafWitnessed:
		h.witSeq, h.witSize = seq, size
	}
}

// TreeIndexPath is where the Writer keeps the tree index of the log at path.
func TreeIndexPath(path string) string { return path + ".tree" }

// treeIndex is the Writer's side of the index (owned by the loop).
type treeIndex struct {
	f    *os.File
	head treeHead
	next int64 // the stored-hash number the next node goes to
	buf  []byte

	// While the Writer's Open replays the log: the hashes the file held,
	// compared with the ones computed until the first difference.
	have int64 // stored hashes in the file (complete ones)
	size int64 // the file's size
	rd   *bufio.Reader
}

// openTreeIndex opens (or creates) the index of the log at path for a
// replay from tree size `from` whose compact range is start (the tree
// state a segment header carries; empty for a log that starts at seq 1).
// Every stored hash the replay computes is compared with the file's and
// the file is rewritten from the first difference.
func openTreeIndex(path string, start *compact.Range) (*treeIndex, error) {
	f, err := os.OpenFile(TreeIndexPath(path), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	x := &treeIndex{f: f, have: max(0, (st.Size()-treeHeader)/hashSize), size: st.Size()}
	hdr := make([]byte, treeHeader)
	valid := true
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr[:16]) != treeMagic {
		valid = false // nothing usable: every hash is written again
	}
	// The nodes of the starting range (the tree of deleted segments) go
	// where they belong; a replay from seq 1 has none.
	from := start.End()
	for i, id := range compact.RangeNodes(0, from, nil) {
		pos := tlog.StoredHashIndex(int(id.Level), int64(id.Index))
		if err := x.put(pos, start.Hashes()[i], valid); err != nil {
			f.Close()
			return nil, err
		}
	}
	x.next = tlog.StoredHashCount(int64(from))
	if valid && x.have > x.next {
		x.rd = bufio.NewReaderSize(io.NewSectionReader(f, treeHeader+x.next*hashSize, (x.have-x.next)*hashSize), 1<<16)
	}
	return x, nil
}

// put writes one stored hash at its place unless the file holds it already.
func (x *treeIndex) put(pos int64, h []byte, compare bool) error {
	if compare && pos < x.have {
		var got [hashSize]byte
		if _, err := x.f.ReadAt(got[:], treeHeader+pos*hashSize); err == nil && bytes.Equal(got[:], h) {
			return nil
		}
	}
	_, err := x.f.WriteAt(h, treeHeader+pos*hashSize)
	return err
}

// visit takes the stored hashes of the leaves the Writer's Open replays,
// in order (the compact range's visitor: a leaf, then the subtrees it
// completes): compared with the file's while the replay is within them,
// else buffered for flush.
func (x *treeIndex) visit(id compact.NodeID, h []byte) {
	if pos := tlog.StoredHashIndex(int(id.Level), int64(id.Index)); pos != x.next {
		panic(fmt.Sprintf("audit: tree index: node %d/%d is hash %d, want %d", id.Level, id.Index, pos, x.next))
	}
	x.next++
	if x.rd != nil {
		var got [hashSize]byte
		if _, err := io.ReadFull(x.rd, got[:]); err == nil && bytes.Equal(got[:], h) {
			if x.next == x.have {
				x.rd = nil
			}
			return
		}
		x.rd = nil // the first difference: everything from here is written again
	}
	x.buf = append(x.buf, h...)
}

// flush writes the buffered hashes after the ones the file holds, cuts
// off what the file holds beyond them, and writes the header.
func (x *treeIndex) flush() error {
	x.rd = nil
	end := treeHeader + x.next*hashSize
	if len(x.buf) > 0 {
		if _, err := x.f.WriteAt(x.buf, end-int64(len(x.buf))); err != nil {
			return err
		}
		x.buf = x.buf[:0]
	}
	if x.size > end {
		if err := x.f.Truncate(end); err != nil {
			return err
		}
	}
	x.have, x.size = x.next, end
	_, err := x.f.WriteAt(x.head.encode(), 0)
	return err
}

// append writes the stored hashes of durable leaves (hashes: whole
// 32-byte hashes, in order) and the header when marks change it.
func (x *treeIndex) append(hashes []byte, marks []idxMark) error {
	if len(hashes) == 0 {
		return nil
	}
	if _, err := x.f.WriteAt(hashes, treeHeader+x.next*hashSize); err != nil {
		return err
	}
	x.next += int64(len(hashes) / hashSize)
	x.have, x.size = x.next, treeHeader+x.next*hashSize
	if len(marks) == 0 {
		return nil
	}
	for _, m := range marks {
		x.head.note(m.kind, m.seq, m.size)
	}
	_, err := x.f.WriteAt(x.head.encode(), 0)
	return err
}

func (x *treeIndex) close() error { return x.f.Close() }
