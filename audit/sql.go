package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
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
// when its process dies. A batch's "fsync" is one transaction (its lines'
// INSERT and COMMIT); a batch that fails is rolled back to the last
// committed line, as a file is cut back. Unlike a file, a line not yet
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
	lock *sql.Conn
	log  string

	mu        sync.Mutex
	pending   []byte // written, not committed; starts at offset committed
	committed int64
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
	f := &sqlFile{db: db, lock: conn, log: log}
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
	return w, nil
}

// readAll is every committed line, in order, each with its newline.
func (f *sqlFile) readAll() ([]byte, error) {
	var out bytes.Buffer
	err := eachSQLLine(context.Background(), f.db, f.log, func(line []byte) error {
		out.Write(line)
		out.WriteByte('\n')
		return nil
	})
	f.mu.Lock()
	f.committed, f.pending = int64(out.Len()), nil
	f.mu.Unlock()
	return out.Bytes(), err
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
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("SQL store: %w", err)
	}
	defer tx.Rollback()
	const perInsert = 256
	var q strings.Builder
	args := make([]any, 0, 5*perInsert)
	off := start
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
			return errors.New("SQL store: a line without a sequence number")
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
				return fmt.Errorf("SQL store: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("SQL store: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("SQL store: commit: %w", err)
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
// may have stored them).
func (f *sqlFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if size >= f.committed && size-f.committed <= int64(len(f.pending)) {
		f.pending = f.pending[:size-f.committed]
	} else {
		f.pending = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.db.ExecContext(ctx, "DELETE FROM "+sqlTable+" WHERE log = ? AND end_offset > ?", f.log, size); err != nil {
		return fmt.Errorf("SQL store: %w", err)
	}
	f.committed = min(f.committed, size)
	return nil
}

func (f *sqlFile) Seek(offset int64, _ int) (int64, error) { return offset, nil }

// Close is called when the writer reopens the store (nothing to do) and
// when it closes; closeLock releases the log for another writer.
func (f *sqlFile) Close() error { return nil }

func (f *sqlFile) closeLock() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.lock.ExecContext(ctx, "DO RELEASE_LOCK(?)", "agentid-audit:"+f.log)
	return f.lock.Close()
}
