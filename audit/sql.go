package audit

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The SQL store: a log kept in a MariaDB/MySQL table instead of files,
// for verifiers without a durable disk of their own (replicas in pods)
// that share one database. The lines are the same bytes a file log holds
// (same hash chain, Merkle tree, checkpoints, witness and receipts), one
// row each:
//
//	CREATE TABLE agentid_audit_lines (
//	  log        VARCHAR(190)    NOT NULL,  -- the log's name (one per writer)
//	  seq        BIGINT UNSIGNED NOT NULL,  -- the line's seq (leaf index + 1)
//	  end_offset BIGINT UNSIGNED NOT NULL,  -- bytes up to and with this line, as in a file
//	  type       VARCHAR(16)     NOT NULL,  -- decision, registrar, key, checkpoint, witnessed
//	  line       MEDIUMBLOB      NOT NULL,  -- the line, without its newline
//	  PRIMARY KEY (log, seq),
//	  KEY by_type (log, type, seq)          -- the checkpoints of a log
//	) ENGINE=InnoDB
//
// One writer per log: OpenSQL takes the named lock "agentid-audit:<log>"
// (GET_LOCK) on a connection it holds until Close; a second writer of the
// same log is refused, and the lock goes with the holder's connection
// when its process dies. Every write goes through that pinned connection
// (which is never replaced by another from the pool) in a transaction
// that commits only if IS_USED_LOCK(name) is still its CONNECTION_ID; once
// the connection drops (a network drop, the server's wait_timeout, a
// KILL) the lock is lost for good and every write fails with
// ErrUnavailable, as another writer may have the log by then. An idle
// lock connection is pinged every 30 s. A batch's "fsync" is one
// transaction (its lines' INSERT and COMMIT); a batch that fails is
// rolled back to the last committed line, as a file is cut back: only
// this writer's own rows are deleted, under the same lock check. Unlike a file, a line not yet
// committed lives in the writer's memory only, so AppendWait answers once
// the line is committed (a kill -9 can lose only unanswered lines). There
// is no rotation, retention or tree index: DumpSQL writes the lines as a
// file for `agentid audit verify` and `prove`.

const sqlTable = "agentid_audit_lines"

const sqlSchema = `CREATE TABLE IF NOT EXISTS ` + sqlTable + ` (
  log VARCHAR(190) NOT NULL,
  seq BIGINT UNSIGNED NOT NULL,
  end_offset BIGINT UNSIGNED NOT NULL,
  type VARCHAR(16) NOT NULL,
  line MEDIUMBLOB NOT NULL,
  PRIMARY KEY (log, seq),
  KEY by_type (log, type, seq)
) ENGINE=InnoDB`

// sqlFile is a log's rows as the Writer's logFile: Write buffers lines,
// Sync commits the complete ones, Truncate cuts the rows back.
type sqlFile struct {
	db   *sql.DB
	lock *sql.Conn // holds the log's named lock; every write goes through it
	log  string

	mu        sync.Mutex
	pending   []byte // written, not committed; starts at offset committed
	committed int64
	// The log as this writer found it (under its lock): the rows after
	// them are this writer's own.
	openedSize int64
	openedSeq  uint64

	// connMu serializes the statements on lock (a transaction, the
	// keepalive, the release); lost, once set, is returned by every write.
	connMu sync.Mutex
	lost   atomic.Pointer[error] // set under connMu
	stop   chan struct{}         // closed by closeLock: ends the keepalive
}

// sqlKeepalive is how often an idle lock connection is pinged, well
// within the server's wait_timeout (8 h by default, often set to minutes).
// A variable for the tests.
var sqlKeepalive = 30 * time.Second

// lostErr is why the lock is lost, nil while it is held.
func (f *sqlFile) lostErr() error {
	if err := f.lost.Load(); err != nil {
		return *err
	}
	return nil
}

// OpenSQL opens (or creates) the log named log in the database db (a
// MariaDB or MySQL *sql.DB; the caller imports the driver) and starts its
// writer, like Open for a file. MaxBytes, RotateInterval, MaxSegments and
// the tree index do not apply; SyncNone is SyncBatch (a batch is committed). Only one writer may have a log open: a
// second is refused while the first holds its lock.
func OpenSQL(ctx context.Context, db *sql.DB, log string, opts Options) (*Writer, error) {
	if log == "" || len(log) > 190 {
		return nil, fmt.Errorf("audit: SQL log name %q: want 1 to 190 characters", log)
	}
	if _, err := db.ExecContext(ctx, sqlSchema); err != nil {
		return nil, fmt.Errorf("audit: SQL store: creating %s: %w", sqlTable, err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: SQL store: %w", err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", "agentid-audit:"+log).Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("audit: SQL store: locking log %q: %w", log, err)
	}
	if got.Int64 != 1 {
		conn.Close()
		return nil, fmt.Errorf("audit: SQL store: log %q is open by another writer (one writer per log)", log)
	}
	f := &sqlFile{db: db, lock: conn, log: log, stop: make(chan struct{})}
	opts.MaxBytes, opts.RotateInterval, opts.MaxSegments, opts.NoTreeIndex = -1, 0, 0, true
	if opts.Durability == SyncNone {
		opts.Durability = SyncBatch // a line is stored by its commit: there is no "written to the OS"
	}
	opts.defaults()
	w := newWriter("sql:"+log, opts)
	w.sqlf = f
	if err := w.start(); err != nil {
		conn.Close()
		return nil, err
	}
	go f.keepalive()
	return w, nil
}

// lockName is the named lock of a log.
func (f *sqlFile) lockName() string { return "agentid-audit:" + f.log }

// keepalive pings the lock connection while the log is idle, so that the
// server's wait_timeout does not drop it (and the lock with it); a ping
// that fails marks the lock lost.
func (f *sqlFile) keepalive() {
	t := time.NewTicker(sqlKeepalive)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.connMu.Lock()
		if f.lostErr() == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := f.lock.PingContext(ctx); err != nil {
				f.loseLock(err)
			}
			cancel()
		}
		f.connMu.Unlock()
	}
}

// loseLock records that the lock is gone (connMu held): the writer stops
// for good, since another writer may have the log now.
func (f *sqlFile) loseLock(cause error) error {
	if err := f.lostErr(); err != nil {
		return err
	}
	err := fmt.Errorf("the lock on log %q is lost (%v): another writer may have the log, this one writes no more; open the log again", f.log, cause)
	f.lost.Store(&err)
	return err
}

// lockedTx runs fn in a transaction on the lock connection and commits
// only if this connection still holds the log's lock (IS_USED_LOCK is
// its CONNECTION_ID). The connection is pinned: when it drops it is not
// replaced by another from the pool, and every write fails from then on.
func (f *sqlFile) lockedTx(ctx context.Context, fn func(*sql.Tx) error) error {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	if err := f.lostErr(); err != nil {
		return err
	}
	tx, err := f.lock.BeginTx(ctx, nil)
	if err != nil {
		return f.connErr(err)
	}
	fail := func(err error) error {
		tx.Rollback()
		return f.connErr(err)
	}
	if err := fn(tx); err != nil {
		return fail(err)
	}
	var held sql.NullBool
	if err := tx.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", f.lockName()).Scan(&held); err != nil {
		return fail(err)
	}
	if !held.Valid || !held.Bool {
		tx.Rollback()
		return f.loseLock(errors.New("this connection no longer holds it"))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", f.connErr(err))
	}
	return nil
}

// connErr is err, and the lock lost when the connection is gone (the
// lock went with it). No transaction is open on the connection.
func (f *sqlFile) connErr(err error) error {
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) {
		return f.loseLock(err)
	}
	// Another error (a driver's own for a dropped connection, or one of
	// the statement): the connection answers a ping, or it is gone.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if perr := f.lock.PingContext(ctx); perr != nil {
		return f.loseLock(fmt.Errorf("%v; then: %v", err, perr))
	}
	return err
}

// readAll is every committed line, in order, each with its newline.
func (f *sqlFile) readAll() ([]byte, error) {
	var out bytes.Buffer
	err := eachSQLLine(context.Background(), f.db, f.log, func(line []byte) error {
		out.Write(line)
		out.WriteByte('\n')
		return nil
	})
	data := out.Bytes()
	f.mu.Lock()
	f.committed, f.pending, f.openedSize, f.openedSeq = int64(len(data)), nil, int64(len(data)), 0
	if len(data) > 0 {
		last := data[bytes.LastIndexByte(data[:len(data)-1], '\n')+1:]
		f.openedSeq, _ = lineSeq(last)
	}
	f.mu.Unlock()
	return data, err
}

func eachSQLLine(ctx context.Context, db *sql.DB, log string, fn func([]byte) error) error {
	rows, err := db.QueryContext(ctx, "SELECT line FROM "+sqlTable+" WHERE log = ? ORDER BY seq", log)
	if err != nil {
		return fmt.Errorf("SQL store: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var line []byte
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("SQL store: %w", err)
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return rows.Err()
}

// DumpSQL writes the lines of the log named log, in order, as the file a
// file log would be: `agentid audit verify`, `prove` and `export` read it.
func DumpSQL(ctx context.Context, db *sql.DB, log string, out io.Writer) error {
	n := 0
	err := eachSQLLine(ctx, db, log, func(line []byte) error {
		n++
		_, err := out.Write(append(line, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("audit: SQL store: no log %q", log)
	}
	return nil
}

func (f *sqlFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	f.pending = append(f.pending, p...)
	f.mu.Unlock()
	return len(p), nil
}

// Sync commits the complete lines written so far in one transaction.
// Lines written while it runs wait for the next Sync.
func (f *sqlFile) Sync() error {
	f.mu.Lock()
	end := bytes.LastIndexByte(f.pending, '\n') + 1
	batch, start := f.pending[:end:end], f.committed
	f.mu.Unlock()
	if end == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const perInsert = 256
	var q strings.Builder
	args := make([]any, 0, 5*perInsert)
	off := start
	err := f.lockedTx(ctx, func(tx *sql.Tx) error {
		flush := func() error {
			if len(args) == 0 {
				return nil
			}
			_, err := tx.ExecContext(ctx, q.String(), args...)
			q.Reset()
			args = args[:0]
			return err
		}
		for rest := batch; len(rest) > 0; {
			line, after, _ := bytes.Cut(rest, []byte{'\n'})
			rest = after
			off += int64(len(line)) + 1
			seq, ok := lineSeq(line)
			if !ok {
				return errors.New("a line without a sequence number")
			}
			if len(args) == 0 {
				q.WriteString("INSERT INTO " + sqlTable + " (log, seq, end_offset, type, line) VALUES ")
			} else {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?)")
			args = append(args, f.log, seq, off, lineType(line), line)
			if len(args) == 5*perInsert {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	})
	if err != nil {
		return fmt.Errorf("SQL store: %w", err)
	}
	f.mu.Lock()
	f.committed = off
	f.pending = f.pending[:copy(f.pending, f.pending[end:])]
	f.mu.Unlock()
	return nil
}

// lineType is a line's "type" (the encoder writes it third).
func lineType(line []byte) string {
	_, rest, ok := bytes.Cut(line, []byte(`,"type":"`))
	if !ok {
		return ""
	}
	typ, _, _ := bytes.Cut(rest, []byte{'"'})
	if len(typ) > 16 {
		typ = typ[:16]
	}
	return string(typ)
}

// Truncate cuts the log back to size bytes: lines not committed beyond it
// are dropped, and rows beyond it deleted (a commit whose answer was lost
// may have stored them). It deletes only this writer's own rows (after
// the log as it found it at Open, under its lock) and only while its
// connection holds the lock (checked in the same transaction): rows
// another writer stored after this one lost the lock are never touched.
func (f *sqlFile) Truncate(size int64) error {
	f.mu.Lock()
	if size < f.openedSize {
		f.mu.Unlock()
		return fmt.Errorf("SQL store: cutting log %q back to byte %d, before the lines this writer found at Open (byte %d): refused", f.log, size, f.openedSize)
	}
	if size >= f.committed && size-f.committed <= int64(len(f.pending)) {
		f.pending = f.pending[:size-f.committed]
	} else {
		f.pending = nil
	}
	floor := f.openedSeq
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := f.lockedTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM "+sqlTable+" WHERE log = ? AND seq > ? AND end_offset > ?", f.log, floor, size)
		return err
	})
	if err != nil {
		return fmt.Errorf("SQL store: %w", err)
	}
	f.mu.Lock()
	f.committed = min(f.committed, size)
	f.mu.Unlock()
	return nil
}

func (f *sqlFile) Seek(offset int64, _ int) (int64, error) { return offset, nil }

// Close is called when the writer reopens the store (nothing to do) and
// when it closes; closeLock releases the log for another writer.
func (f *sqlFile) Close() error { return nil }

func (f *sqlFile) closeLock() error {
	close(f.stop)
	f.connMu.Lock()
	defer f.connMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if f.lostErr() == nil {
		f.lock.ExecContext(ctx, "DO RELEASE_LOCK(?)", f.lockName())
	}
	return f.lock.Close()
}
