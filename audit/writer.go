package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Durability says when appended records reach the disk.
type Durability int

const (
	// SyncBatch (default) fsyncs once per written batch.
	SyncBatch Durability = iota
	// SyncEvery writes and fsyncs every record on its own.
	SyncEvery
	// SyncNone never fsyncs; the OS writes back when it likes.
	SyncNone
)

// ParseDurability reads "batch", "every" or "none".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "", "batch":
		return SyncBatch, nil
	case "every":
		return SyncEvery, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("audit: durability %q: want batch, every or none", s)
}

// Options configure a Writer. Zero values take the documented defaults.
type Options struct {
	Durability Durability
	// MaxBatch is the most records written per sync (default 4096): one
	// fsync covers everything queued up to it (group commit).
	MaxBatch int
	// BatchDelay is how long the writer waits after a batch's first record
	// for more before writing and syncing it (group commit; default 2 ms,
	// negative: do not wait). A crash loses at most the records of the
	// batch being gathered or written; Flush ends a batch at once.
	BatchDelay time.Duration
	// SyncInterval (SyncBatch) is the least time between the starts of two
	// fsyncs (default 10 ms; negative: none). Every batch is written to the
	// OS at once — a kill -9 of the process loses nothing more — and the
	// next fsync covers what was written meanwhile; an OS crash or power
	// loss may lose what was written since the last fsync began. Under
	// steady load the group commit otherwise fsyncs back to back (~2,000 a
	// second at 0.1–0.2 ms of kernel CPU each). Flush, and callers whose
	// reference waits for an fsync, start one at once. A log in a
	// database (mysqlstore) commits every batch, whatever SyncInterval.
	SyncInterval time.Duration
	// MaxBytes rotates the file when it grows beyond this size (0: 64 MiB;
	// negative: never).
	MaxBytes int64
	// RotateInterval also rotates the file once its first line is this old
	// when a line is written (0: never).
	RotateInterval time.Duration
	// MaxSegments, when positive, is retention: after a rotation the
	// oldest files are deleted while there are more than this many
	// (the current file included). A file is deleted only once every line
	// of it is covered by a checkpoint (with a Witness: by a witnessed
	// one) and the file after it starts with a segment record; the files
	// left verify on their own (see Verify) and receipts handed out
	// before stay valid (a receipt is self-contained).
	MaxSegments int
	// Signer, when set, provides the X.509-SVID whose key signs
	// checkpoints (e.g. a workloadapi.X509Source).
	Signer x509svid.Source
	// SignerID, when set, is the only SPIFFE ID the writer signs
	// checkpoints as: an SVID of another ID is not used (the checkpoint
	// fails like one without an SVID, see CheckpointError), so a
	// misconfigured workload cannot produce a log that `agentid audit
	// verify --signer` (or --config) would refuse later.
	SignerID spiffeid.ID
	// CheckpointEvery appends a checkpoint after this many records
	// (default 1000), and CheckpointInterval at least this often while
	// records arrive (default 1 minute). Only with a Signer.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Clock stamps records (default time.Now).
	Clock func() time.Time
	// QueueSize bounds the records waiting to be written (default 8192);
	// Append blocks when it is full.
	QueueSize int
	// Witness, when set, is asked to cosign each checkpoint once it is on
	// disk (one request at a time; a checkpoint made while one is in flight
	// waits for the next chance, so checkpoints queue while the witness is
	// down). Its cosigned checkpoint is appended as a "witnessed" record.
	Witness Witness
	// WitnessTimeout bounds one witness request (default 10 s).
	WitnessTimeout time.Duration
	// NoTreeIndex leaves out the tree index (TreeIndexPath) the writer
	// otherwise keeps beside the log: `agentid audit prove` then reads the
	// whole log for every receipt.
	NoTreeIndex bool
	// RetryInterval is how often a log that failed to write (disk full,
	// I/O error) tries again (default 1 s); while it cannot write, Append
	// refuses new records with ErrUnavailable.
	RetryInterval time.Duration
}

func (o *Options) defaults() {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if o.Durability == SyncEvery {
		o.MaxBatch = 1
	}
	if o.BatchDelay == 0 {
		o.BatchDelay = 2 * time.Millisecond
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 10 * time.Millisecond
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 64 << 20
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 1000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.WitnessTimeout <= 0 {
		o.WitnessTimeout = 10 * time.Second
	}
}

// ErrClosed is returned by Append and Flush after Close.
var ErrClosed = errors.New("audit: log closed")

// ErrUnavailable is returned (wrapped, with the cause) by Append and Flush
// while the log cannot write: the records it had accepted are kept and
// written once it can again, new ones are refused.
var ErrUnavailable = errors.New("audit: log cannot take records")

// Writer appends records to a hash-chained log file. It is safe for
// concurrent use.
type Writer struct {
	path string
	opts Options

	// The queue: Append adds under mu and wakes the loop only when the queue
	// was empty, so a busy writer costs its callers one lock and no
	// goroutine switch per record.
	mu       sync.Mutex
	notFull  sync.Cond // signalled when the loop takes the queue
	q        []item
	closed   bool
	wake     chan struct{} // cap 1: the queue became non-empty
	urgent   chan struct{} // cap 1: write now (Flush, Close, a full batch)
	done     chan struct{}
	pending  atomic.Int64
	err      atomic.Pointer[error] // fatal: set by Close's last write
	broken   atomic.Pointer[error] // the log cannot write now (retried)
	errs     atomic.Uint64         // failed writes and syncs
	syncs    atomic.Uint64         // batches synced
	ckptErr  atomic.Pointer[error] // the last checkpoint that could not be signed
	witErr   atomic.Pointer[error] // the last witness request that failed
	witBusy  atomic.Bool           // a witness request is in flight
	witReq   chan *witnessJob      // to the witness goroutine
	witDone  chan struct{}         // the witness goroutine ended
	cosigned chan Record           // witnessed records, from the witness goroutine
	witSize  atomic.Uint64         // the last tree size a witness cosigned
	retErr   atomic.Pointer[error] // the last retention failure

	// Owned by the loop goroutine.
	f        logFile
	sqlf     *sqlFile // the SQL store (OpenSQL), else nil: files
	buf      *bufio.Writer
	size     int64
	seq      uint64 // of the last written record
	firstSeq uint64 // of the current file's first record
	// prev is the leaf hash of the last line (seq > 0): the next line's
	// "prev" names it ("leaf:<hex>").
	prev           [sha256.Size]byte
	sinceCkpt      int
	lastCkpt       time.Time
	ckptSize       uint64 // the tree size of the last checkpoint written
	recoveredBytes int64
	fileStart      time.Time // of the current file's first line
	line           []byte    // encoding buffer
	hasher         hash.Hash // the SHA-256 state of leafHash
	// The Merkle tree (format v2): rng is the compact range of every line
	// written; origin names the log (from its first line); the note key is
	// made at the first checkpoint and bound to the SVID in a key record
	// before every checkpoint.
	rng        *compact.Range
	origin     string
	noteSigner note.Signer
	noteVKey   string
	// For the witness: the compact range at the last witnessed size, the
	// leaf hashes since, the checkpoints not yet witnessed (snapshots of
	// the range at their sizes) and the last checkpoint to send.
	witRange *compact.Range
	since    [][]byte
	pend     []snapshot
	stash    *pendingCheckpoint
	// mark is the state at the last successful sync, unsynced the records
	// written to the buffer since: a failed write rolls back to mark and
	// keeps unsynced (and what was queued) in retry, to write again.
	mark     mark
	unsynced []Record
	waiters  []*waiter // of unsynced records (nil: nobody waits)
	retry    []Record
	// fly is the batch whose fsync is in flight (SyncBatch): the loop
	// encodes the next batch meanwhile, and settles it (commit or
	// rollback) before syncing again.
	fly *inflight
	// syncStarted is when the last fsync started; syncTimer (armed:
	// syncArmed) starts the next one once SyncInterval has passed.
	syncStarted time.Time
	syncTimer   *time.Timer
	syncArmed   bool
	// replaying: the records kept for retry are being written again
	replaying bool
	// The tree index (<path>.tree, see TreeIndexPath): idxBuf holds the
	// stored hashes of the leaves written since the last sync (from leaf
	// idxFrom on), idxMarks their checkpoint and witnessed lines; both go
	// to the index once durable. nil idx: not kept (idxErr says why).
	idx        *treeIndex
	idxBuf     []byte
	idxMarks   []idxMark
	idxFrom    uint64
	idxVisit   compact.VisitFn
	idxErr     atomic.Pointer[error]
	recovering bool
	// flushes answered by the next sync (written while one was in flight)
	nextFlushes []chan error
}

// inflight is a batch written to the OS whose fsync runs in its own
// goroutine.
type inflight struct {
	done    chan struct{} // closed when the fsync returned (err set)
	err     error
	mark    mark // the state after the batch
	n       int  // unsynced[:n] are the batch's records
	flushes []chan error
}

// waiter is a caller of AppendWait: answered once its record is written
// to the OS with the default durability (SyncBatch: the fsync follows at
// once, and a record answered for is never dropped — a failed fsync keeps
// it for retry at the same index), once synced with SyncEvery, with ref
// set; or with err set when it could not be written.
type waiter struct {
	ref      Ref
	err      error
	done     chan struct{}
	answered bool
}

// mark is the part of the loop's state that a rollback restores.
type mark struct {
	size      int64
	seq       uint64
	firstSeq  uint64
	prev      [sha256.Size]byte
	sinceCkpt int
	ckptSize  uint64
	rng       *compact.Range
	witRange  *compact.Range
	since     [][]byte
	pend      []snapshot
}

type snapshot struct {
	size uint64
	rng  *compact.Range
}

// pendingCheckpoint is a checkpoint on its way to the witness.
type pendingCheckpoint struct {
	size uint64
	note []byte
	key  []byte // the key record's line
}

type item struct {
	rec   Record
	wait  *waiter    // AppendWait's caller, answered when rec is synced
	flush chan error // a barrier: answered once everything before it is synced
	tick  bool       // the checkpoint timer: checkpoint if one is due
}

// Open opens (or creates) the log at path and starts its writer loop. It
// continues the chain of an existing log, truncating a torn last line left
// by a crash.
func Open(path string, opts Options) (*Writer, error) {
	opts.defaults()
	w := newWriter(path, opts)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := w.start(); err != nil {
		return nil, err
	}
	return w, nil
}

func newWriter(path string, opts Options) *Writer {
	w := &Writer{path: path, opts: opts, wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1), done: make(chan struct{}),
		rng: rangeFactory.NewEmptyRange(0), witRange: rangeFactory.NewEmptyRange(0)}
	w.notFull.L = &w.mu
	w.idxVisit = func(_ compact.NodeID, h []byte) { w.idxBuf = append(w.idxBuf, h...) }
	return w
}

// start recovers the log and starts the writer's goroutines.
func (w *Writer) start() error {
	if err := w.recover(); err != nil {
		if w.idx != nil {
			w.idx.close()
		}
		return err
	}
	w.commit()
	w.lastCkpt = w.opts.Clock()
	if w.sinceCkpt > 0 {
		// An unsigned tail (a crash): the first record, the first tick or
		// Close checkpoints it.
		w.lastCkpt = time.Time{}
	}
	if w.opts.Witness != nil {
		w.witReq, w.witDone, w.cosigned = make(chan *witnessJob), make(chan struct{}), make(chan Record, 4)
		go w.witnessLoop()
	}
	go w.loop()
	return nil
}

// WitnessError is the error of the last witness request, nil once one
// succeeds: checkpoints are kept and sent again while it fails.
func (w *Writer) WitnessError() error {
	if err := w.witErr.Load(); err != nil {
		return *err
	}
	return nil
}

// WitnessedSize is the tree size of the last checkpoint a witness cosigned
// (0: none since Open, or no witness).
func (w *Writer) WitnessedSize() uint64 { return w.witSize.Load() }

// witnessLoop sends checkpoints to the witness, one at a time, and hands
// the cosigned ones to the writer loop.
func (w *Writer) witnessLoop() {
	defer close(w.witDone)
	for job := range w.witReq {
		rec, err := w.cosignJob(job)
		if err != nil {
			w.witErr.Store(&err)
			w.witBusy.Store(false)
			continue
		}
		w.witErr.Store(nil)
		w.cosigned <- rec // the loop clears witBusy once it is written
	}
}

// witnessJob is a request with what the writer kept to prove consistency
// from another old size (the range at the last witnessed size and the
// leaf hashes since; neither is changed once handed over).
type witnessJob struct {
	req  *WitnessRequest
	tree *partialTree
	size uint64
}

// cosignJob asks the witness; if it answers that it has cosigned a larger
// checkpoint of this log than the writer recorded (the writer stopped
// after the witness cosigned, before the cosigned copy reached the log),
// it asks again with the consistency proof from the witness's size.
func (w *Writer) cosignJob(job *witnessJob) (Record, error) {
	rec, err := w.cosign(job.req)
	var ce *WitnessConflictError
	if !errors.As(err, &ce) || ce.Size == job.req.OldSize || ce.Size > job.size {
		return rec, err
	}
	proof, perr := job.tree.consistency(ce.Size, job.size)
	if perr != nil {
		return Record{}, fmt.Errorf("%w (and no consistency proof from that size: %v)", err, perr)
	}
	retry := *job.req
	retry.OldSize, retry.Consistency = ce.Size, proof
	return w.cosign(&retry)
}

func (w *Writer) cosign(req *WitnessRequest) (Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.WitnessTimeout)
	defer cancel()
	sigs, err := w.opts.Witness.Cosign(ctx, req)
	if err != nil {
		return Record{}, fmt.Errorf("audit: witness: %w", err)
	}
	cosigned := append(bytes.Clone(req.Checkpoint), sigs...)
	if _, err := note.Open(cosigned, note.VerifierList()); err != nil {
		var u *note.UnverifiedNoteError
		if !errors.As(err, &u) {
			return Record{}, fmt.Errorf("audit: witness: malformed cosignature: %w", err)
		}
	}
	return Record{Type: TypeWitnessed, Note: string(cosigned)}, nil
}

// RecoveredBytes is the size of the torn tail that Open removed (0 after a
// clean shutdown).
func (w *Writer) RecoveredBytes() int64 { return w.recoveredBytes }

// Pending is the number of records queued but not yet written: the audit lag.
func (w *Writer) Pending() int64 { return w.pending.Load() }

// Healthy is nil while the log takes records, else why it cannot.
func (w *Writer) Healthy() error {
	if err := w.broken.Load(); err != nil {
		return *err
	}
	if err := w.err.Load(); err != nil {
		return *err
	}
	if w.sqlf != nil {
		if err := w.sqlf.lostErr(); err != nil {
			return fmt.Errorf("%w: SQL store: %w", ErrUnavailable, err)
		}
	}
	return nil
}

// WriteErrors counts failed writes and syncs since Open (each is retried).
func (w *Writer) WriteErrors() uint64 { return w.errs.Load() }

// CheckpointError is the error of the last checkpoint that could not be
// made (no SVID to sign with), nil once one succeeds. Records are written
// all the same; the unsigned tail grows until a checkpoint succeeds.
func (w *Writer) CheckpointError() error {
	if err := w.ckptErr.Load(); err != nil {
		return *err
	}
	return nil
}

// Append queues rec for writing; it fills Seq, Prev and (when zero) Time.
// It returns before the record is on disk; call Flush to wait. It blocks
// while QueueSize records are waiting, and refuses records with
// ErrUnavailable while the log cannot write (see Healthy).
func (w *Writer) Append(rec Record) error {
	return w.enqueue(rec, nil)
}

// AppendWait appends rec and waits until it is in the log, then returns
// its Ref (the log's origin and the record's leaf index), which `agentid
// audit prove` turns into a receipt once a checkpoint covers it. "In the
// log" depends on the durability: with SyncBatch (the default) the record
// has been written to the OS — a kill -9 of this process can no longer
// lose it — and its batch's fsync is under way (an OS crash or power loss
// before that fsync can); with SyncEvery it has been synced; with SyncNone
// it has been written to the OS and nothing more is promised. Callers
// share the writes (group commit): a waiting caller ends the batch's
// gathering delay. If the record cannot be written the error wraps
// ErrUnavailable and the record is dropped (not retried): the caller was
// told it is not in the log. A record answered for is never dropped and
// keeps its index: if its batch's fsync fails, it is written again, first
// and with no checkpoint cut among the records written again, once the
// log can write; a record that follows a key, checkpoint or witness line
// not yet synced is answered only after the fsync
// (TestReceiptsKeepTheirRecordAfterAFailedFsync).
func (w *Writer) AppendWait(rec Record) (Ref, error) {
	wt := &waiter{done: make(chan struct{})}
	if err := w.enqueue(rec, wt); err != nil {
		return Ref{}, err
	}
	<-wt.done
	return wt.ref, wt.err
}

func (w *Writer) enqueue(rec Record, wt *waiter) error {
	if err := w.Healthy(); err != nil {
		return err
	}
	w.mu.Lock()
	for len(w.q) >= w.opts.QueueSize && !w.closed {
		signal(w.urgent) // a full queue is written now, not after BatchDelay
		w.notFull.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.q = append(w.q, item{rec: rec, wait: wt})
	n := len(w.q)
	w.pending.Add(1) // before the loop can take it
	w.mu.Unlock()
	if n == 1 {
		signal(w.wake)
	}
	if wt != nil || n == min(w.opts.MaxBatch, w.opts.QueueSize) {
		signal(w.urgent)
	}
	return nil
}

// Flush waits until every record appended before it is written and, unless
// the durability is SyncNone, synced.
func (w *Writer) Flush() error {
	ch := make(chan error, 1)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.q = append(w.q, item{flush: ch})
	w.mu.Unlock()
	signal(w.wake)
	signal(w.urgent)
	return <-ch
}

// Close writes what is queued, appends a final checkpoint when a Signer is
// set, syncs and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.notFull.Broadcast()
	w.mu.Unlock()
	signal(w.wake)
	signal(w.urgent)
	<-w.done
	if err := w.err.Load(); err != nil {
		return *err
	}
	return nil
}

// signal sets a one-slot notification without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// loop writes batches: once something is queued it waits BatchDelay for
// more (group commit) unless told to write now, then takes the whole queue
// and writes it MaxBatch records per sync.
func (w *Writer) loop() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	retry := time.NewTicker(w.opts.RetryInterval)
	defer retry.Stop()
	var ckptTick <-chan time.Time
	if w.opts.Signer != nil {
		t := time.NewTicker(w.opts.CheckpointInterval)
		defer t.Stop()
		ckptTick = t.C
	}
	var spare []item
	for {
		now := false
		select {
		case <-w.flyDone():
			w.settle()
			continue
		case <-w.syncDue():
			w.syncArmed = false
			w.settle()
			continue
		case <-w.wake:
		case <-w.urgent:
			now = true
		case <-retry.C:
			if w.broken.Load() == nil {
				continue
			}
			now = true
		case <-ckptTick:
			w.writeBatch([]item{{tick: true}})
			w.sendWitness()
			continue
		case rec := <-w.cosigned:
			w.pending.Add(1)
			w.writeBatch([]item{{rec: rec}})
			w.witBusy.Store(false)
			w.sendWitness()
			w.retain() // files the witness now covers may go
			continue
		}
		if w.opts.BatchDelay > 0 && !now {
			timer.Reset(w.opts.BatchDelay)
		gather:
			for {
				select {
				case <-timer.C:
					break gather
				case <-w.urgent:
					timer.Stop()
					break gather
				case <-w.flyDone():
					w.settle() // answer the last batch's callers meanwhile
				}
			}
		}
		w.mu.Lock()
		taken, closed := w.q, w.closed
		w.q = spare
		w.notFull.Broadcast()
		w.mu.Unlock()
		if len(taken) == 0 && w.broken.Load() != nil {
			w.writeBatch(nil) // try the records kept for retry
		}
		for batch := taken; len(batch) > 0; {
			n := min(len(batch), w.opts.MaxBatch)
			// A flush ends its chunk so that it is answered once the
			// records before it are synced.
			for i := range n {
				if batch[i].flush != nil {
					n = i + 1
					break
				}
			}
			w.writeBatch(batch[:n])
			batch = batch[n:]
		}
		clear(taken)
		spare = taken[:0]
		if closed {
			break
		}
	}
	w.drain()
	if w.broken.Load() != nil {
		w.writeBatch(nil) // a last try
		w.drain()
	}
	if err := w.broken.Load(); err != nil {
		w.fail(fmt.Errorf("audit: %d record(s) could not be written: %w", len(w.retry), *err))
	} else {
		if w.opts.Signer != nil && w.sinceCkpt > 0 {
			w.tryCheckpoint()
		}
		w.fail(w.sync())
		w.closeWitness()
		w.retain()
	}
	w.fail(w.f.Close())
	if w.idx != nil {
		w.indexTo(w.mark.seq, true)
		if w.idx != nil {
			w.idx.close()
		}
	}
	if w.sqlf != nil {
		w.sqlf.closeLock()
	}
}

// closeWitness waits for the request in flight, then has the last
// checkpoint cosigned (within WitnessTimeout) and appends it.
func (w *Writer) closeWitness() {
	if w.witReq == nil {
		return
	}
	close(w.witReq)
	<-w.witDone
	var recs []Record
	for len(w.cosigned) > 0 {
		recs = append(recs, <-w.cosigned)
	}
	for i := range recs {
		w.fail(w.write(&recs[i]))
	}
	if job := w.witnessRequest(); job != nil {
		if rec, err := w.cosignJob(job); err != nil {
			w.witErr.Store(&err)
		} else {
			w.fail(w.write(&rec))
		}
	}
	w.fail(w.sync())
}

// sendWitness hands the last checkpoint on disk to the witness goroutine
// unless a request is in flight.
func (w *Writer) sendWitness() {
	if w.witReq == nil || w.stash == nil || w.stash.size >= w.mark.seq || !w.witBusy.CompareAndSwap(false, true) {
		return
	}
	job := w.witnessRequest()
	if job == nil {
		w.witBusy.Store(false)
		return
	}
	w.witReq <- job
}

// witnessRequest builds the request for the stashed checkpoint: the
// consistency proof from the last witnessed size and the inclusion proof of
// the key record, from the range and leaves kept since.
func (w *Writer) witnessRequest() *witnessJob {
	c := w.stash
	if c == nil || c.size <= w.witRange.End() {
		w.stash = nil
		return nil
	}
	w.stash = nil
	pt := newPartialTree(w.witRange, w.since)
	req := &WitnessRequest{OldSize: w.witRange.End(), Checkpoint: c.note, Key: c.key}
	var err error
	if req.Consistency, err = pt.consistency(req.OldSize, c.size); err == nil {
		req.KeyProof, err = pt.inclusion(c.size-1, c.size)
	}
	if err != nil {
		err = fmt.Errorf("audit: witness request: %w", err)
		w.witErr.Store(&err)
		return nil
	}
	return &witnessJob{req: req, tree: pt, size: c.size}
}

// writeBatch writes the records kept for retry, then batch, and syncs;
// flush barriers in batch are answered with the outcome. On a failed write
// or sync everything not yet synced is rolled back and kept for retry.
func (w *Writer) writeBatch(batch []item) {
	var flushes []chan error
	for i := range batch {
		if batch[i].flush != nil {
			flushes = append(flushes, batch[i].flush)
		}
	}
	retry := w.retry
	w.retry = nil
	var err error
	if w.broken.Load() != nil {
		err = w.reopen()
	}
	r := 0 // retry[:r] written
	// The records kept for retry are written again as they were: no
	// checkpoint cut among them (a time-based one would now fall
	// elsewhere and move records whose references were handed out).
	w.replaying = true
	for err == nil && r < len(retry) {
		if err = w.writeRecord(&retry[r], nil); err == nil {
			r++
		}
	}
	w.replaying = false
	b := 0 // batch[:b] written
	for err == nil && b < len(batch) {
		switch {
		case batch[b].tick:
			if w.sinceCkpt > 0 && w.opts.Clock().Sub(w.lastCkpt) >= w.opts.CheckpointInterval {
				err = w.tryCheckpoint()
			}
		case batch[b].flush == nil:
			err = w.writeRecord(&batch[b].rec, batch[b].wait)
		}
		if err == nil {
			b++
		}
	}
	if err == nil && w.opts.Durability == SyncBatch {
		// Group commit, pipelined: while an fsync is in flight the loop
		// keeps encoding what arrives; the next fsync, started when that
		// one returns, covers all of it.
		w.nextFlushes = append(w.nextFlushes, flushes...)
		flushes = nil
		// The batch goes to the OS now (its waiting callers are answered,
		// and a kill -9 cannot lose it); an fsync starts unless one is in
		// flight or the last one started less than SyncInterval ago (the
		// next one covers it).
		if err = w.buf.Flush(); err != nil {
			err = fmt.Errorf("audit: %w", err)
		} else if w.answerWritten(); w.fly == nil {
			if w.syncAllowed() {
				err = w.startSync()
			} else {
				w.armSync()
			}
		}
	} else if err == nil {
		err = w.sync()
	}
	if err != nil {
		w.finishSync() // an fsync in flight: settled before rolling back to the last durable state
		w.errs.Add(1)
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		w.rollback(err) // the unsynced records go to retry first
		flushes = append(flushes, w.nextFlushes...)
		w.nextFlushes = nil
		w.retry = append(w.retry, retry[r:]...)
		for i := b; i < len(batch); i++ {
			switch {
			case batch[i].wait != nil:
				w.pending.Add(-1)
				batch[i].wait.err = err
				close(batch[i].wait.done)
			case batch[i].flush == nil && !batch[i].tick:
				w.retry = append(w.retry, batch[i].rec)
			}
		}
		w.broken.Store(&err)
	} else {
		w.broken.Store(nil)
		w.sendWitness()
	}
	for _, ch := range flushes {
		ch <- err
	}
}

// syncAllowed tells whether an fsync may start now: SyncInterval has
// passed since the last one started, or someone waits for it (a Flush, or
// a caller whose reference needs the fsync).
func (w *Writer) syncAllowed() bool {
	// A log in a database commits at the "fsync": its lines are not in the
	// OS before that, so it is not held back.
	return w.sqlf != nil || w.opts.SyncInterval <= 0 || time.Since(w.syncStarted) >= w.opts.SyncInterval ||
		len(w.nextFlushes) > 0 || w.waiting()
}

// armSync has the loop start the next fsync once SyncInterval has passed
// since the last one started.
func (w *Writer) armSync() {
	if w.syncArmed {
		return
	}
	d := w.opts.SyncInterval - time.Since(w.syncStarted)
	if w.syncTimer == nil {
		w.syncTimer = time.NewTimer(d)
	} else {
		w.syncTimer.Reset(d)
	}
	w.syncArmed = true
}

// syncDue fires when an armed fsync is due (nil: none armed).
func (w *Writer) syncDue() <-chan time.Time {
	if !w.syncArmed {
		return nil
	}
	return w.syncTimer.C
}

// flyDone is the in-flight fsync's completion (nil: none).
func (w *Writer) flyDone() <-chan struct{} {
	if w.fly == nil {
		return nil
	}
	return w.fly.done
}

// startSync writes the buffer to the OS and starts its fsync in a
// goroutine; the batch is committed (its callers answered) when
// finishSync sees it succeed.
func (w *Writer) startSync() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	// In the OS: a kill -9 no longer loses these records.
	w.answerWritten()
	w.syncStarted = time.Now()
	fl := &inflight{done: make(chan struct{}), mark: w.snapshot(), n: len(w.unsynced), flushes: w.nextFlushes}
	w.nextFlushes = nil
	f := w.f
	go func() {
		if err := fsync(f); err != nil {
			fl.err = fmt.Errorf("audit: fsync: %w", err)
		}
		close(fl.done)
	}()
	w.fly = fl
	return nil
}

// finishSync waits for the fsync in flight, if any: on success its batch
// is committed and its flushes answered; on failure the flushes get the
// error, which is returned (the caller rolls back to the last durable
// state).
func (w *Writer) finishSync() error {
	fl := w.fly
	if fl == nil {
		return nil
	}
	<-fl.done
	w.fly = nil
	if fl.err != nil {
		err := fmt.Errorf("%w: %w", ErrUnavailable, fl.err)
		for _, ch := range fl.flushes {
			ch <- err
		}
		return fl.err
	}
	w.syncs.Add(1)
	w.commitTo(fl.mark, fl.n)
	for _, ch := range fl.flushes {
		ch <- nil
	}
	w.sendWitness()
	return nil
}

// drain settles fsyncs until none is in flight.
func (w *Writer) drain() {
	for w.fly != nil {
		w.settle()
	}
}

// settle finishes the fsync in flight and starts the next one for what
// was written meanwhile; a failure rolls back like a failed batch.
func (w *Writer) settle() {
	err := w.finishSync()
	if err == nil && w.fly == nil && (w.mark.size != w.size || w.buf.Buffered() > 0 || len(w.nextFlushes) > 0) {
		if w.syncAllowed() {
			err = w.startSync()
		} else {
			w.armSync()
		}
	}
	if err != nil {
		w.finishSync()
		w.errs.Add(1)
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		w.rollback(err)
		w.broken.Store(&err)
		for _, ch := range w.nextFlushes {
			ch <- err
		}
		w.nextFlushes = nil
	}
}

// writeRecord writes one record, and a checkpoint after it when due. A
// checkpoint that cannot be signed is not a write failure: it is retried
// with the next record.
func (w *Writer) writeRecord(rec *Record, wt *waiter) error {
	if err := w.write(rec); err != nil {
		return err
	}
	w.unsynced = append(w.unsynced, *rec)
	w.waiters = append(w.waiters, wt)
	if w.opts.Signer != nil && !w.replaying && (w.sinceCkpt >= w.opts.CheckpointEvery || w.opts.Clock().Sub(w.lastCkpt) >= w.opts.CheckpointInterval) {
		return w.tryCheckpoint()
	}
	return nil
}

// tryCheckpoint appends a checkpoint; only a write error is returned.
func (w *Writer) tryCheckpoint() error {
	err := w.checkpoint()
	var se *signError
	if errors.As(err, &se) {
		w.ckptErr.Store(&err)
		w.lastCkpt = w.opts.Clock() // not again for every record
		return nil
	}
	if err == nil {
		w.ckptErr.Store(nil)
	}
	return err
}

// rollback forgets what was written since the last sync: the file is cut
// back to it and the records go to retry (their times kept, sequence
// numbers given again when they are written), except those whose callers
// wait: they are told err and the record is dropped.
func (w *Writer) rollback(err error) {
	m := w.mark
	w.size, w.seq, w.firstSeq, w.prev, w.sinceCkpt, w.ckptSize = m.size, m.seq, m.firstSeq, m.prev, m.sinceCkpt, m.ckptSize
	// The leaves past the mark may be held by a witness request: append
	// to a new array rather than over them.
	w.rng, w.witRange, w.since, w.pend = cloneRange(m.rng), m.witRange, slices.Clip(m.since), m.pend
	if w.stash != nil && w.stash.size > m.seq {
		w.stash = nil
	}
	if w.idx != nil {
		w.idxBuf = w.idxBuf[:w.idxBytes(m.seq)]
		for len(w.idxMarks) > 0 && w.idxMarks[len(w.idxMarks)-1].seq > m.seq {
			w.idxMarks = w.idxMarks[:len(w.idxMarks)-1]
		}
	}
	for i, rec := range w.unsynced {
		switch {
		case w.waiters[i] != nil && !w.waiters[i].answered:
			w.pending.Add(-1)
			w.waiters[i].err = err
			close(w.waiters[i].done)
		case rec.Type != TypeCheckpoint && rec.Type != TypeKey:
			// Answered for (in the OS, lost with the failed fsync) or
			// not waited for: written again, first, at the same index.
			rec.Seq, rec.Prev = 0, ""
			w.retry = append(w.retry, rec)
		}
	}
	w.unsynced = w.unsynced[:0]
	clear(w.waiters)
	w.waiters = w.waiters[:0]
	w.f.Truncate(m.size) // best effort: reopen truncates again
	w.buf = bufio.NewWriterSize(w.f, 64<<10)
	w.f.Seek(m.size, io.SeekStart)
}

// reopen opens the log file again before a retry (it may have been
// replaced, or its file system remounted) at the last synced size.
func (w *Writer) reopen() error {
	w.f.Close()
	f, err := w.openLog()
	if err != nil {
		return fmt.Errorf("audit: reopening: %w", err)
	}
	size := w.mark.size
	if of, ok := f.(*os.File); ok {
		if st, err := of.Stat(); err == nil && st.Size() < size {
			size = 0 // a new file: the chain continues in it
		}
	}
	w.f = f
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	w.buf, w.size, w.mark.size = bufio.NewWriterSize(f, 64<<10), size, size
	return nil
}

// commit makes the current state the rollback mark: the records written
// since the last one are durable (and no longer pending).
func (w *Writer) commit() {
	w.commitTo(w.snapshot(), len(w.unsynced))
}

// snapshot is the current state, as a rollback mark.
func (w *Writer) snapshot() mark {
	return mark{size: w.size, seq: w.seq, firstSeq: w.firstSeq, prev: w.prev, sinceCkpt: w.sinceCkpt, ckptSize: w.ckptSize,
		rng: cloneRange(w.rng), witRange: w.witRange, since: w.since, pend: w.pend}
}

// waiting says whether an unsynced record has a caller not yet answered.
func (w *Writer) waiting() bool {
	for _, wt := range w.waiters {
		if wt != nil && !wt.answered {
			return true
		}
	}
	return false
}

// logFile is where a Writer's lines go: the log's current file, or the
// SQL store (OpenSQL).
type logFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Seek(offset int64, whence int) (int64, error)
	Close() error
}

// fsync syncs a log file (a variable for the tests of a failing fsync).
var fsync = func(f logFile) error { return f.Sync() }

// answerWritten answers, before their fsync, the waiting callers of the
// unsynced records that only records precede since the last sync. Only
// those keep their index if the fsync fails: a rollback writes the
// records again, in order, but not the key, checkpoint and witness lines
// written among them (those are cut again when due, and a time-based one
// may then fall elsewhere), so a record after one could move. Callers of
// those wait for the fsync (commitTo).
func (w *Writer) answerWritten() {
	if w.sqlf != nil {
		return // lines not committed are in this process only: answered at commit
	}
	n := 0
	for n < len(w.unsynced) && w.unsynced[n].Seq == w.mark.seq+uint64(n)+1 {
		n++
	}
	w.answer(n)
}

// answer gives the waiting callers of the first n unsynced records their
// references, once.
func (w *Writer) answer(n int) {
	for i, wt := range w.waiters[:n] {
		if wt != nil && !wt.answered {
			wt.ref, wt.answered = Ref{Origin: w.origin, Index: w.unsynced[i].Seq - 1}, true
			close(wt.done)
		}
	}
}

// commitTo makes m the rollback mark: the first n unsynced records are
// durable, their waiting callers are answered with their references.
func (w *Writer) commitTo(m mark, n int) {
	w.mark = m
	w.indexTo(m.seq, false)
	w.pending.Add(-int64(n))
	w.answer(n)
	k := copy(w.unsynced, w.unsynced[n:])
	clear(w.unsynced[k:])
	w.unsynced = w.unsynced[:k]
	k = copy(w.waiters, w.waiters[n:])
	clear(w.waiters[k:])
	w.waiters = w.waiters[:k]
}

// indexTo adds the leaves up to seq, durable now, to the tree index. An
// index that cannot be written is given up (IndexError) until the next
// Open rebuilds it: the log does not depend on it. The hashes of plain
// records wait in idxBuf (unless force, or idxBatch bytes are waiting)
// until a checkpoint or witnessed line is durable: a proof needs the
// tree of a checkpoint, and one write per checkpoint rather than per
// fsync saves a write syscall every SyncInterval (TestTreeIndexAtCheckpoints).
func (w *Writer) indexTo(seq uint64, force bool) {
	if w.idx == nil || seq <= w.idxFrom {
		return
	}
	nb, nm := w.idxBytes(seq), 0
	for nm < len(w.idxMarks) && w.idxMarks[nm].seq <= seq {
		nm++
	}
	if nm == 0 && nb < idxBatch && !force {
		return
	}
	if err := w.idx.append(w.idxBuf[:nb], w.idxMarks[:nm]); err != nil {
		w.dropIndex(fmt.Errorf("audit: tree index: %w", err))
		return
	}
	w.idxBuf = w.idxBuf[:copy(w.idxBuf, w.idxBuf[nb:])]
	w.idxMarks = w.idxMarks[:copy(w.idxMarks, w.idxMarks[nm:])]
	w.idxFrom = seq
}

// idxBatch is how many bytes of record hashes the index takes at once
// when no checkpoint comes (a log without a Signer): ~1,000 records.
const idxBatch = 64 << 10

// idxBytes is how many bytes of idxBuf the leaves before seq fill.
func (w *Writer) idxBytes(seq uint64) int {
	return int(tlog.StoredHashCount(int64(seq))-tlog.StoredHashCount(int64(w.idxFrom))) * hashSize
}

func (w *Writer) dropIndex(err error) {
	w.idxErr.Store(&err)
	if w.idx != nil {
		w.idx.close()
	}
	w.idx, w.idxBuf, w.idxMarks = nil, nil, nil
}

// IndexError says why the tree index (TreeIndexPath) is not kept, nil
// while it is: `agentid audit prove` then reads the whole log instead,
// and the next Open rebuilds the index.
func (w *Writer) IndexError() error {
	if err := w.idxErr.Load(); err != nil {
		return *err
	}
	return nil
}

func (w *Writer) fail(err error) {
	if err != nil {
		w.err.CompareAndSwap(nil, &err)
	}
}

func (w *Writer) write(rec *Record) error {
	if rec.Time.IsZero() {
		rec.Time = w.opts.Clock()
	}
	rec.Time = rec.Time.UTC()
	w.encode(rec)
	// A checkpoint stays in the file of the key record before it.
	if w.size > 0 && rec.Type != TypeCheckpoint && (w.opts.MaxBytes > 0 && w.size+int64(len(w.line))+1 > w.opts.MaxBytes ||
		w.opts.RotateInterval > 0 && rec.Time.Sub(w.fileStart) >= w.opts.RotateInterval) {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	if w.size == 0 && w.seq > 0 && rec.Type != TypeSegment {
		// A file after the log's first starts with the tree state, so
		// that it verifies without the files before it.
		if err := w.write(&Record{Type: TypeSegment, Time: rec.Time, Origin: w.origin, Tree: slices.Clone(w.rng.Hashes())}); err != nil {
			return err
		}
		w.encode(rec)
	}
	line := w.line
	if w.size == 0 {
		w.firstSeq, w.fileStart = rec.Seq, rec.Time
	}
	if _, err := w.buf.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	w.size += int64(len(line)) + 1
	leaf := w.leafHash(line) // the line's only hash: prev and the tree's leaf
	w.seq, w.prev = rec.Seq, [sha256.Size]byte(leaf)
	w.addLeaf(line, leaf, rec.Type, rec.Note)
	switch rec.Type {
	case TypeCheckpoint, TypeKey, TypeWitnessed, TypeSegment:
	default:
		w.sinceCkpt++
	}
	return nil
}

// leafHash is LeafHash(line) with the writer's own hash state: the line
// is not copied behind the prefix byte.
func (w *Writer) leafHash(line []byte) []byte {
	if w.hasher == nil {
		w.hasher = sha256.New()
	}
	w.hasher.Reset()
	w.hasher.Write(leafPrefix[:])
	w.hasher.Write(line)
	return w.hasher.Sum(make([]byte, 0, sha256.Size))
}

var leafPrefix = [1]byte{rfc6962.RFC6962LeafHashPrefix}

// encode numbers rec as the next line and encodes it into w.line, its
// "prev" naming the last line by its leaf hash (GenesisPrev for a log's
// first line). rec.Prev is left empty: the writer's copy of the record
// needs no string of it.
func (w *Writer) encode(rec *Record) {
	rec.Seq, rec.Prev = w.seq+1, ""
	b := append(rec.appendFields(w.line[:0]), `,"prev":"`...)
	if w.seq == 0 {
		b = append(b, GenesisPrev...)
	} else {
		b = appendLeafPrev(b, &w.prev)
	}
	w.line = append(b, '"', '}')
}

// addLeaf adds a line (the next, at index w.seq-1) to the tree and keeps
// what the witness needs: the leaves since the last witnessed size, a
// snapshot at each checkpoint, and the witnessed size when a witnessed
// record is written.
func (w *Writer) addLeaf(line, leaf []byte, typ, noteText string) {
	if w.rng.End() == 0 {
		w.origin = Origin(line)
	}
	if typ == TypeCheckpoint && noteText != "" {
		w.ckptSize = w.rng.End()
	}
	if typ == TypeCheckpoint && w.opts.Witness != nil {
		w.pend = append(w.pend, snapshot{size: w.rng.End(), rng: cloneRange(w.rng)})
	}
	var visit compact.VisitFn
	if w.idx != nil {
		if kind, size := leafKind(typ, noteText, w.rng.End()); kind != leafRecord {
			if w.recovering {
				w.idx.head.note(kind, w.rng.End()+1, size)
			} else {
				w.idxMarks = append(w.idxMarks, idxMark{kind, w.rng.End() + 1, size})
			}
		}
		visit = w.idxVisit
		if w.recovering {
			visit = w.idx.visit // durable already: checked against the index
		}
	}
	if err := w.rng.Append(leaf, visit); err != nil {
		panic(err) // appending to a valid range cannot fail
	}
	if w.opts.Witness == nil {
		return
	}
	w.since = append(w.since, leaf)
	if typ == TypeWitnessed {
		var c log.Checkpoint
		if _, err := c.Unmarshal([]byte(noteText)); err != nil {
			return
		}
		for i, s := range w.pend {
			if s.size == c.Size {
				drop := s.size - w.witRange.End()
				w.witRange, w.since, w.pend = s.rng, w.since[drop:], w.pend[i+1:]
				w.witSize.Store(s.size)
				break
			}
		}
	}
}

func (w *Writer) sync() error {
	if err := w.finishSync(); err != nil {
		return err
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if w.opts.Durability != SyncNone {
		if err := fsync(w.f); err != nil {
			return fmt.Errorf("audit: fsync: %w", err)
		}
	}
	w.syncs.Add(1)
	w.commit()
	for _, ch := range w.nextFlushes {
		ch <- nil
	}
	w.nextFlushes = nil
	return nil
}

// signError is a checkpoint that could not be signed.
type signError struct{ err error }

func (e *signError) Error() string { return e.err.Error() }
func (e *signError) Unwrap() error { return e.err }

// checkpoint appends a key record binding the log's note key to the
// current SVID (signed with the SVID's key), then a checkpoint line whose
// note, signed with the note key, commits to the tree of every line before
// it, the key record included.
func (w *Writer) checkpoint() error {
	s, err := w.opts.Signer.GetX509SVID()
	if err != nil {
		return &signError{fmt.Errorf("audit: checkpoint: no SVID to sign with: %w", err)}
	}
	if !w.opts.SignerID.IsZero() && s.ID != w.opts.SignerID {
		return &signError{fmt.Errorf("audit: checkpoint: the SVID is %s, not the configured signer %s", s.ID, w.opts.SignerID)}
	}
	if w.noteSigner == nil || w.noteSigner.Name() != w.origin {
		if w.noteSigner, w.noteVKey, err = newNoteKey(w.origin); err != nil {
			return &signError{fmt.Errorf("audit: checkpoint: note key: %w", err)}
		}
	}
	now := w.opts.Clock().UTC()
	key := &Record{Type: TypeKey, Time: now, Signer: s.ID.String(), NoteKey: w.noteVKey}
	for _, c := range s.Certificates {
		key.Chain = append(key.Chain, c.Raw)
	}
	if key.Signature, err = signPayload(s.PrivateKey, keyPayload(w.noteVKey, now)); err != nil {
		return &signError{fmt.Errorf("audit: checkpoint: %w", err)}
	}
	if err := w.write(key); err != nil {
		return err
	}
	keyLine := bytes.Clone(w.line)
	size := w.rng.End()
	signed, err := note.Sign(&note.Note{Text: checkpointBody(w.origin, size, rangeRoot(w.rng))}, w.noteSigner)
	if err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	w.sinceCkpt, w.lastCkpt = 0, w.opts.Clock()
	if err := w.write(&Record{Type: TypeCheckpoint, Time: now, Signer: key.Signer, Note: string(signed)}); err != nil {
		return err
	}
	if w.opts.Witness != nil {
		w.stash = &pendingCheckpoint{size: size, note: signed, key: keyLine}
	}
	return nil
}

// checkpointPayload is what a format v1 checkpoint signs: its seq, time
// and the hash of the line before it.
func checkpointPayload(seq uint64, t time.Time, prev string) []byte {
	return []byte("agentid-audit-checkpoint-v1\n" + strconv.FormatUint(seq, 10) + "\n" + t.UTC().Format(time.RFC3339Nano) + "\n" + prev + "\n")
}

// signPayload signs payload with an SVID key: Ed25519 over the payload,
// ECDSA (ASN.1) and RSA (PKCS#1 v1.5) over its SHA-256.
func signPayload(key crypto.Signer, payload []byte) ([]byte, error) {
	if _, ok := key.(ed25519.PrivateKey); ok {
		return key.Sign(rand.Reader, payload, crypto.Hash(0))
	}
	digest := sha256.Sum256(payload)
	return key.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// rotate renames the current file to <stem>.<first-seq><ext> and starts a
// new one; the chain continues.
func (w *Writer) rotate() error {
	if err := w.sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := os.Rename(w.path, rotatedName(w.path, w.firstSeq)); err != nil {
		return fmt.Errorf("audit: rotating: %w", err)
	}
	if err := w.openFile(0); err != nil {
		return err
	}
	w.commit()
	w.retain()
	return nil
}

// retain deletes the oldest files of the log beyond MaxSegments (see
// Options.MaxSegments). A file that cannot be deleted yet stays until a
// later rotation; errors are kept for RetentionError, not fatal.
func (w *Writer) retain() {
	if w.opts.MaxSegments <= 0 {
		return
	}
	segs, err := segments(w.path)
	if err != nil {
		w.retErr.Store(&err)
		return
	}
	covered := w.ckptSize
	if w.opts.Witness != nil {
		covered = w.witSize.Load()
	}
	for len(segs) > w.opts.MaxSegments && len(segs) >= 2 {
		next := segs[1]
		if next.firstSeq-1 > covered {
			return // its last lines are not covered (witnessed) yet
		}
		if typ, err := firstType(next.path); err != nil || typ != TypeSegment {
			if err == nil {
				err = fmt.Errorf("audit: retention: %s does not start with a segment record (written before them): %s is kept", next.path, segs[0].path)
			}
			w.retErr.Store(&err)
			return
		}
		if err := os.Remove(segs[0].path); err != nil {
			err = fmt.Errorf("audit: retention: %w", err)
			w.retErr.Store(&err)
			return
		}
		segs = segs[1:]
	}
	w.retErr.Store(nil)
}

// RetentionError is why retention last failed to delete a file it should
// have (nil: none).
func (w *Writer) RetentionError() error {
	if err := w.retErr.Load(); err != nil {
		return *err
	}
	return nil
}

// openLog opens the current file (or the SQL store) for writing.
func (w *Writer) openLog() (logFile, error) {
	if w.sqlf != nil {
		return w.sqlf, nil
	}
	return os.OpenFile(w.path, os.O_RDWR|os.O_CREATE, 0o640)
}

func (w *Writer) openFile(truncateTo int64) error {
	f, err := w.openLog()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := f.Truncate(truncateTo); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := f.Seek(truncateTo, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	w.f, w.buf, w.size = f, bufio.NewWriterSize(f, 64<<10), truncateTo
	return nil
}

// recover reads every file of the log: it rebuilds the Merkle tree (and
// what the witness needs), cuts a torn last line off the current file and
// continues the chain from the last complete line.
func (w *Writer) recover() error {
	prevSHA := GenesisPrev // the last line's SHA-256 "prev" (logs written before leaf prevs)
	files, err := Files(w.path)
	if w.sqlf != nil {
		files, err = []string{w.path}, nil // one table, no segments
	}
	if err != nil {
		return err
	}
	keep := int64(0)
	if len(files) > 0 && w.sqlf == nil {
		// Retention deleted the files before this one: the tree state
		// carries over from its segment record.
		if rec, err := firstRecord(files[0]); err == nil && rec.Type == TypeSegment && rec.Seq > 1 {
			r, err := rangeFactory.NewRange(0, rec.Seq-1, rec.Tree)
			if err != nil {
				return fmt.Errorf("audit: %s: segment record: %w", files[0], err)
			}
			w.rng, w.witRange, w.origin, w.seq = r, cloneRange(r), rec.Origin, rec.Seq-1
		}
	}
	if !w.opts.NoTreeIndex {
		if w.idx, err = openTreeIndex(w.path, w.rng); err != nil {
			w.dropIndex(fmt.Errorf("audit: tree index: %w", err))
		}
	}
	w.recovering = true
	defer func() { w.recovering = false }()
	// Open checks what it continues (cheaply: it hashes every line
	// anyway): every line's prev is the hash of the line before it and
	// every checkpoint's root is the tree of the lines before it, so that
	// a line rewritten while the writer was stopped is not signed over by
	// the next checkpoint. The signatures are `agentid audit verify`'s job.
	roots := map[uint64][]byte{} // checkpoint roots by tree size, for the witnessed lines
	for fi, f := range files {
		var data []byte
		if w.sqlf != nil {
			data, err = w.sqlf.readAll()
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		end := bytes.LastIndexByte(data, '\n') + 1
		if f == w.path {
			keep = int64(end)
			w.recoveredBytes = int64(len(data)) - keep
		}
		first := true
		for rest := data[:end]; len(rest) > 0; {
			line, after, _ := bytes.Cut(rest, []byte{'\n'})
			rest = after
			var head struct {
				Seq  uint64    `json:"seq"`
				Prev string    `json:"prev"`
				Time time.Time `json:"time"`
				Type string    `json:"type"`
				Note string    `json:"note"`
			}
			if err := json.Unmarshal(line, &head); err != nil {
				return fmt.Errorf("audit: %s: line of seq %d: %w", f, w.seq+1, err)
			}
			// The first line of the oldest file retention kept chains to
			// a deleted line: its tree state came from its segment record.
			if !(first && fi == 0 && head.Type == TypeSegment && head.Seq > 1) {
				if err := w.checkRecovered(line, head.Seq, head.Prev, prevSHA, head.Type, head.Note, roots); err != "" {
					return fmt.Errorf("audit: %s: line of seq %d: %s: the log was altered; the writer will not continue it (run agentid audit verify on it, and move it aside to start a new log)", f, head.Seq, err)
				}
			}
			if first && f == w.path {
				w.firstSeq, w.fileStart = head.Seq, head.Time
			}
			first = false
			leaf := LeafHash(line)
			prevSHA = lineHash(line)
			w.seq, w.prev = head.Seq, [sha256.Size]byte(leaf)
			w.addLeaf(line, leaf, head.Type, head.Note)
			switch head.Type {
			case TypeCheckpoint:
				w.sinceCkpt = 0
			case TypeKey, TypeWitnessed, TypeSegment:
			default:
				w.sinceCkpt++
			}
		}
	}
	if w.seq != w.rng.End() {
		return fmt.Errorf("audit: %s: the last line has seq %d but the log has %d lines (run agentid audit verify)", w.path, w.seq, w.rng.End())
	}
	if w.idx != nil {
		if err := w.idx.flush(); err != nil {
			w.dropIndex(fmt.Errorf("audit: tree index: %w", err))
		}
		w.idxFrom = w.seq
	}
	return w.openFile(keep)
}

// checkRecovered checks a line Open replays against the lines before it
// (the tree not yet holding it): its seq and prev continue the chain, and
// a checkpoint's (or witnessed checkpoint's) root is that of the tree of
// its size. It returns what is wrong, "" if nothing.
func (w *Writer) checkRecovered(line []byte, seq uint64, prev, prevSHA, typ, noteText string, roots map[uint64][]byte) string {
	switch {
	case seq != w.seq+1:
		return fmt.Sprintf("sequence number %d, expected %d (a line was removed, reordered or inserted)", seq, w.seq+1)
	case w.seq == 0 && prev != GenesisPrev, w.seq > 0 && !chainsTo(prev, prevSHA, w.prev[:]):
		return "prev hash does not match the previous line (the previous line was altered, or this one was moved)"
	}
	if noteText == "" || (typ != TypeCheckpoint && typ != TypeWitnessed) {
		return "" // a record, or a format v1 checkpoint (no tree)
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(noteText)); err != nil {
		return "checkpoint: " + err.Error()
	}
	if typ == TypeWitnessed {
		if root, ok := roots[c.Size]; ok && !bytes.Equal(root, c.Hash) {
			return fmt.Sprintf("witnessed checkpoint: root hash of tree size %d differs from the log's checkpoint of that size", c.Size)
		}
		return ""
	}
	root := rangeRoot(w.rng)
	switch {
	case c.Size != w.rng.End():
		return fmt.Sprintf("checkpoint: tree size %d, but %d lines precede it", c.Size, w.rng.End())
	case !bytes.Equal(c.Hash, root):
		return "checkpoint: root hash does not match the lines before it (they were altered)"
	}
	roots[c.Size] = root
	return ""
}

// Path is the log's current file.
func (w *Writer) Path() string { return w.path }

// Syncs is the number of batches written and synced since Open: with
// AppendWait, how many records share one fsync is records/Syncs.
func (w *Writer) Syncs() uint64 { return w.syncs.Load() }
