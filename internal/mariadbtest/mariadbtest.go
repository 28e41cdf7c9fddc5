// Package mariadbtest starts a real MariaDB server for tests: a fresh data
// directory under /tmp, a unix socket, no network, stopped when the test
// ends. `make test` installs mariadb-server (apt-get); where it is not
// installed the test is skipped, saying so.
package mariadbtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver, for the DSN Start returns
)

// Start starts mariadbd and returns the DSN (github.com/go-sql-driver/mysql
// format) of an empty database "agentid" on it.
func Start(t testing.TB) string {
	t.Helper()
	server, err := exec.LookPath("mariadbd")
	if err != nil {
		server = "/usr/sbin/mariadbd"
	}
	install, err := exec.LookPath("mariadb-install-db")
	if _, serr := os.Stat(server); serr != nil || err != nil {
		const msg = "MariaDB is not installed (no mariadbd / mariadb-install-db; `make test` runs apt-get install mariadb-server): the SQL store is not tested"
		if os.Getenv("AGENTID_REQUIRE_MARIADB") != "" { // make test: a missing MariaDB fails, never passes silently
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("/tmp", "aimdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, sock, tmp := filepath.Join(dir, "data"), filepath.Join(dir, "s"), filepath.Join(dir, "tmp")
	// Each instance its own tmpdir: with /tmp shared by the instances of
	// parallel test processes, mariadb-install-db once failed on a
	// temporary table of its own that was gone ("Could not remove
	// temporary table '/tmp/#sql-temptable-…'", then "Unknown table
	// 'mysql.tmp_proxies_priv'").
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	var asRoot []string
	if os.Geteuid() == 0 {
		asRoot = []string{"--user=root"}
	}
	args := append([]string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--auth-root-authentication-method=normal", "--skip-test-db"}, asRoot...)
	if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	cmd := exec.Command(server, append([]string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--socket=" + sock, "--skip-networking",
		"--pid-file=" + filepath.Join(dir, "pid"), "--innodb-buffer-pool-size=32M", "--log-error=" + filepath.Join(dir, "err")}, asRoot...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	db, err := sql.Open("mysql", "root@unix("+sock+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if err = db.PingContext(ctx); err == nil {
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "err"))
			t.Fatalf("mariadbd exited: %s", log)
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "err"))
			t.Fatalf("mariadbd did not answer within 60 s: %v\n%s", err, log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE agentid"); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("root@unix(%s)/agentid", sock)
}
