package auditv1

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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
	// MaxBytes rotates the file when it grows beyond this size (0: 64 MiB;
	// negative: never).
	MaxBytes int64
	// Signer, when set, provides the X.509-SVID whose key signs
	// checkpoints (e.g. a workloadapi.X509Source).
	Signer x509svid.Source
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
	mu      sync.Mutex
	notFull sync.Cond // signalled when the loop takes the queue
	q       []item
	closed  bool
	wake    chan struct{} // cap 1: the queue became non-empty
	urgent  chan struct{} // cap 1: write now (Flush, Close, a full batch)
	done    chan struct{}
	pending atomic.Int64
	err     atomic.Pointer[error] // fatal: set by Close's last write
	broken  atomic.Pointer[error] // the log cannot write now (retried)
	errs    atomic.Uint64         // failed writes and syncs
	ckptErr atomic.Pointer[error] // the last checkpoint that could not be signed

	// Owned by the loop goroutine.
	f              *os.File
	buf            *bufio.Writer
	size           int64
	seq            uint64 // of the last written record
	firstSeq       uint64 // of the current file's first record
	prev           string
	sinceCkpt      int
	lastCkpt       time.Time
	recoveredBytes int64
	line           []byte // encoding buffer
	// mark is the state at the last successful sync, unsynced the records
	// written to the buffer since: a failed write rolls back to mark and
	// keeps unsynced (and what was queued) in retry, to write again.
	mark     mark
	unsynced []Record
	retry    []Record
}

// mark is the part of the loop's state that a rollback restores.
type mark struct {
	size      int64
	seq       uint64
	firstSeq  uint64
	prev      string
	sinceCkpt int
}

type item struct {
	rec   Record
	flush chan error // a barrier: answered once everything before it is synced
}

// Open opens (or creates) the log at path and starts its writer loop. It
// continues the chain of an existing log, truncating a torn last line left
// by a crash.
func Open(path string, opts Options) (*Writer, error) {
	opts.defaults()
	w := &Writer{path: path, opts: opts, wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1), done: make(chan struct{})}
	w.notFull.L = &w.mu
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := w.recover(); err != nil {
		return nil, err
	}
	w.commit()
	w.lastCkpt = opts.Clock()
	go w.loop()
	return w, nil
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
	w.q = append(w.q, item{rec: rec})
	n := len(w.q)
	w.pending.Add(1) // before the loop can take it
	w.mu.Unlock()
	if n == 1 {
		signal(w.wake)
	}
	if n == min(w.opts.MaxBatch, w.opts.QueueSize) {
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
	var spare []item
	for {
		now := false
		select {
		case <-w.wake:
		case <-w.urgent:
			now = true
		case <-retry.C:
			if w.broken.Load() == nil {
				continue
			}
			now = true
		}
		if w.opts.BatchDelay > 0 && !now {
			timer.Reset(w.opts.BatchDelay)
			select {
			case <-timer.C:
			case <-w.urgent:
				timer.Stop()
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
	if w.broken.Load() != nil {
		w.writeBatch(nil) // a last try
	}
	if err := w.broken.Load(); err != nil {
		w.fail(fmt.Errorf("audit: %d record(s) could not be written: %w", len(w.retry), *err))
	} else {
		if w.opts.Signer != nil && w.sinceCkpt > 0 {
			w.tryCheckpoint()
		}
		w.fail(w.sync())
	}
	w.fail(w.f.Close())
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
	for err == nil && r < len(retry) {
		if err = w.writeRecord(&retry[r]); err == nil {
			r++
		}
	}
	b := 0 // batch[:b] written
	for err == nil && b < len(batch) {
		if batch[b].flush == nil {
			err = w.writeRecord(&batch[b].rec)
		}
		if err == nil {
			b++
		}
	}
	if err == nil {
		err = w.sync()
	}
	if err != nil {
		w.errs.Add(1)
		w.rollback() // the unsynced records go to retry first
		w.retry = append(w.retry, retry[r:]...)
		for i := b; i < len(batch); i++ {
			if batch[i].flush == nil {
				w.retry = append(w.retry, batch[i].rec)
			}
		}
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		w.broken.Store(&err)
	} else {
		w.broken.Store(nil)
	}
	for _, ch := range flushes {
		ch <- err
	}
}

// writeRecord writes one record, and a checkpoint after it when due. A
// checkpoint that cannot be signed is not a write failure: it is retried
// with the next record.
func (w *Writer) writeRecord(rec *Record) error {
	if err := w.write(rec); err != nil {
		return err
	}
	w.unsynced = append(w.unsynced, *rec)
	if w.opts.Signer != nil && (w.sinceCkpt >= w.opts.CheckpointEvery || w.opts.Clock().Sub(w.lastCkpt) >= w.opts.CheckpointInterval) {
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
// numbers given again when they are written).
func (w *Writer) rollback() {
	m := w.mark
	w.size, w.seq, w.firstSeq, w.prev, w.sinceCkpt = m.size, m.seq, m.firstSeq, m.prev, m.sinceCkpt
	for _, rec := range w.unsynced {
		if rec.Type != TypeCheckpoint {
			rec.Seq, rec.Prev = 0, ""
			w.retry = append(w.retry, rec)
		}
	}
	w.unsynced = w.unsynced[:0]
	w.f.Truncate(m.size) // best effort: reopen truncates again
	w.buf = bufio.NewWriterSize(w.f, 64<<10)
	w.f.Seek(m.size, io.SeekStart)
}

// reopen opens the log file again before a retry (it may have been
// replaced, or its file system remounted) at the last synced size.
func (w *Writer) reopen() error {
	w.f.Close()
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit: reopening: %w", err)
	}
	size := w.mark.size
	if st, err := f.Stat(); err == nil && st.Size() < size {
		size = 0 // a new file: the chain continues in it
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
	w.mark = mark{size: w.size, seq: w.seq, firstSeq: w.firstSeq, prev: w.prev, sinceCkpt: w.sinceCkpt}
	w.pending.Add(-int64(len(w.unsynced)))
	clear(w.unsynced)
	w.unsynced = w.unsynced[:0]
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
	rec.Seq = w.seq + 1
	rec.Prev = w.prev
	w.line = rec.appendJSON(w.line[:0])
	line := w.line
	if w.opts.MaxBytes > 0 && w.size > 0 && w.size+int64(len(line))+1 > w.opts.MaxBytes {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	if w.size == 0 {
		w.firstSeq = rec.Seq
	}
	if _, err := w.buf.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	w.size += int64(len(line)) + 1
	w.seq, w.prev = rec.Seq, lineHash(line)
	if rec.Type != TypeCheckpoint {
		w.sinceCkpt++
	}
	return nil
}

func (w *Writer) sync() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if w.opts.Durability != SyncNone {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("audit: fsync: %w", err)
		}
	}
	w.commit()
	return nil
}

// signError is a checkpoint that could not be signed.
type signError struct{ err error }

func (e *signError) Error() string { return e.err.Error() }
func (e *signError) Unwrap() error { return e.err }

// checkpoint appends a line signed with the current SVID's key over the
// hash of the previous line (which commits to the whole chain before it).
func (w *Writer) checkpoint() error {
	s, err := w.opts.Signer.GetX509SVID()
	if err != nil {
		return &signError{fmt.Errorf("audit: checkpoint: no SVID to sign with: %w", err)}
	}
	rec := &Record{Type: TypeCheckpoint, Time: w.opts.Clock().UTC(), Signer: s.ID.String()}
	for _, c := range s.Certificates {
		rec.Chain = append(rec.Chain, c.Raw)
	}
	rec.Signature, err = signCheckpoint(s.PrivateKey, w.seq+1, rec.Time, w.prev)
	if err != nil {
		return &signError{fmt.Errorf("audit: checkpoint: %w", err)}
	}
	w.sinceCkpt, w.lastCkpt = 0, w.opts.Clock()
	return w.write(rec)
}

// checkpointPayload is what a checkpoint signs: its seq, time and the hash
// of the line before it.
func checkpointPayload(seq uint64, t time.Time, prev string) []byte {
	return []byte("agentid-audit-checkpoint-v1\n" + strconv.FormatUint(seq, 10) + "\n" + t.UTC().Format(time.RFC3339Nano) + "\n" + prev + "\n")
}

func signCheckpoint(key crypto.Signer, seq uint64, t time.Time, prev string) ([]byte, error) {
	payload := checkpointPayload(seq, t, prev)
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
	return nil
}

func (w *Writer) openFile(truncateTo int64) error {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE, 0o640)
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

// recover finds the last complete line of the log (current file, else the
// newest rotated file) and continues the chain from it.
func (w *Writer) recover() error {
	w.prev = GenesisPrev
	data, err := os.ReadFile(w.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit: %w", err)
	}
	keep := int64(bytes.LastIndexByte(data, '\n') + 1)
	w.recoveredBytes = int64(len(data)) - keep
	data = data[:keep]
	if len(data) == 0 {
		if err := w.continueFromRotated(); err != nil {
			return err
		}
		return w.openFile(0)
	}
	first, last := firstAndLastLine(data)
	if err := w.resume(first, last); err != nil {
		return err
	}
	return w.openFile(keep)
}

func (w *Writer) continueFromRotated() error {
	files, err := Files(w.path)
	if err != nil || len(files) < 2 { // only the (empty) current file
		return err
	}
	data, err := os.ReadFile(files[len(files)-2])
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	if len(data) == 0 {
		return nil
	}
	_, last := firstAndLastLine(data)
	var rec Record
	if err := json.Unmarshal(last, &rec); err != nil {
		return fmt.Errorf("audit: last line of %s: %w", files[len(files)-2], err)
	}
	w.seq, w.prev = rec.Seq, lineHash(last)
	return nil
}

func (w *Writer) resume(first, last []byte) error {
	var f, l Record
	if err := json.Unmarshal(first, &f); err != nil {
		return fmt.Errorf("audit: first line of %s: %w", w.path, err)
	}
	if err := json.Unmarshal(last, &l); err != nil {
		return fmt.Errorf("audit: last line of %s: %w", w.path, err)
	}
	w.firstSeq, w.seq, w.prev = f.Seq, l.Seq, lineHash(last)
	return nil
}

// firstAndLastLine splits complete lines (data ends with '\n').
func firstAndLastLine(data []byte) (first, last []byte) {
	body := data[:len(data)-1]
	first, _, _ = bytes.Cut(body, []byte{'\n'})
	return first, body[bytes.LastIndexByte(body, '\n')+1:]
}
