package main

import (
	"context"
	"fmt"
	"os"

	"github.com/agentid/agentid/audit/mysqlstore"
)

func (env *cli) auditDump(args []string) error {
	fs := env.flags("audit dump", `audit dump --dsn DSN --log NAME [--out FILE]

Writes a log kept in MariaDB/MySQL (a daemon's audit { mysql { dsn, log } })
as the file a file log would be, line for line: audit verify, prove and
export then read that file.`)
	dsn := fs.String("dsn", "", "the database, as in the audit block (user:password@tcp(host:3306)/agentid)")
	log := fs.String("log", "", "the log's name (audit.mysql.log)")
	out := fs.String("out", "", "write here (default: stdout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c := mysqlstore.Config{DSN: *dsn, Log: *log}
	if key, err := c.Check(); err != nil {
		return fmt.Errorf("%w: --%s: %v", errUsage, key, err)
	}
	w := env.stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return mysqlstore.Dump(context.Background(), c, w)
}
