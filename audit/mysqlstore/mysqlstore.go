// Package mysqlstore opens audit logs kept in MariaDB or MySQL
// (audit.OpenSQL) from a daemon's configuration: an audit block's
// mysql { dsn, log }. It links the driver (github.com/go-sql-driver/mysql);
// the log format, its verification and receipts are package audit's.
package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/agentid/agentid/audit"
	"github.com/go-sql-driver/mysql"
)

// Config is an audit block's mysql { dsn, log }.
type Config struct {
	// DSN is the database, in the driver's format:
	// "user:password@tcp(host:3306)/agentid" or "user@unix(/run/mysqld/mysqld.sock)/agentid".
	DSN string
	// Log names this writer's log: one writer per name (verifier
	// replicas sharing a database each take their own).
	Log string
}

// Check validates the settings: it returns the key at fault ("dsn" or
// "log") with the error.
func (c Config) Check() (string, error) {
	if _, err := mysql.ParseDSN(c.DSN); err != nil {
		return "dsn", fmt.Errorf("audit.mysql.dsn: %w (want e.g. \"user:password@tcp(db:3306)/agentid\")", err)
	}
	if c.Log == "" || len(c.Log) > 190 {
		return "log", errors.New("audit.mysql.log: want a name of 1 to 190 characters, one per writer")
	}
	return "", nil
}

// Open opens the log and its writer; close closes both.
func Open(ctx context.Context, c Config, opts audit.Options) (w *audit.Writer, close func() error, err error) {
	db, err := sql.Open("mysql", c.DSN)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: mysql: %w", err)
	}
	if w, err = audit.OpenSQL(ctx, db, c.Log, opts); err != nil {
		db.Close()
		return nil, nil, err
	}
	return w, func() error { return errors.Join(w.Close(), db.Close()) }, nil
}

// Dump writes the log's lines as the file a file log would be, for
// `agentid audit verify`, `prove` and `export`.
func Dump(ctx context.Context, c Config, out io.Writer) error {
	db, err := sql.Open("mysql", c.DSN)
	if err != nil {
		return fmt.Errorf("audit: mysql: %w", err)
	}
	defer db.Close()
	return audit.DumpSQL(ctx, db, c.Log, out)
}
