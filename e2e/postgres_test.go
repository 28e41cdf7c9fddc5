package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postgres is a private PostgreSQL cluster for one test: its own data
// folder, TCP port on 127.0.0.1 and unix socket folder, trust
// authentication, run by the postgres user and stopped with
// `pg_ctl stop -m fast` when the test ends.
type postgres struct {
	Port     int
	Database string
	dir      string // scratch folder owned by postgres: data/, postgres.log, sockets
	bin      string // folder of initdb, pg_ctl, pg_isready, createdb
	cred     *syscall.Credential
}

// postgresUser is the system account that owns and runs the cluster
// (PostgreSQL refuses to run as root).
const postgresUser = "postgres"

// startPostgres initialises and starts a cluster with database db. There is
// no skip: without the PostgreSQL server binaries the test fails (`make
// test` installs them).
func startPostgres(t *testing.T, db string) *postgres {
	t.Helper()
	start := time.Now()
	pg := &postgres{Database: db, bin: postgresBin(t), cred: postgresCred(t)}
	// A short folder outside t.TempDir(), whose parents are private to
	// root: the postgres user must reach it, and the socket path
	// <dir>/.s.PGSQL.<port> must stay under 107 bytes.
	dir, err := os.MkdirTemp("", "pg")
	if err != nil {
		t.Fatal(err)
	}
	pg.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) }) // runs after the stop below
	if pg.cred != nil {
		if err := os.Chown(dir, int(pg.cred.Uid), int(pg.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(pg.logPath())
			t.Logf("postgres log %s:\n%s", pg.logPath(), tail(string(b), 30))
		}
	})

	if out, err := pg.cmd(30*time.Second, "initdb", "-D", pg.dataDir(), "-U", postgresUser,
		"--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// A port picked by freePort may be taken before the server binds it:
	// one retry on another port.
	for attempt := 1; ; attempt++ {
		err := pg.start()
		if err == nil {
			break
		}
		if attempt == 2 || !strings.Contains(pg.log(), "could not bind") {
			t.Fatalf("postgres did not start: %v", err)
		}
		t.Logf("postgres: retrying on another port: %v", err)
	}
	t.Cleanup(func() { pg.stop(t) })
	pg.waitReady(t, 30*time.Second)
	if out, err := pg.cmd(30*time.Second, "createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port),
		"-U", postgresUser, db); err != nil {
		t.Fatalf("createdb: %v\n%s", err, out)
	}
	t.Logf("postgres on 127.0.0.1:%d ready with database %q after %v", pg.Port, db, time.Since(start).Round(time.Millisecond))
	return pg
}

// ConnString is the libpq connection string for SPIRE's sql datastore.
func (pg *postgres) ConnString() string {
	return fmt.Sprintf("dbname=%s user=%s host=127.0.0.1 port=%d sslmode=disable", pg.Database, postgresUser, pg.Port)
}

// SPIREDataStore is the plugin_data of SPIRE's DataStore "sql" plugin for
// this database (spiretest.Options.DataStore).
func (pg *postgres) SPIREDataStore() string {
	return "database_type = \"postgres\"\nconnection_string = " + strconv.Quote(pg.ConnString())
}

func (pg *postgres) dataDir() string { return filepath.Join(pg.dir, "data") }
func (pg *postgres) logPath() string { return filepath.Join(pg.dir, "postgres.log") }

func (pg *postgres) log() string {
	b, _ := os.ReadFile(pg.logPath())
	return string(b)
}

// start runs `pg_ctl start` on a fresh port. pg_ctl -w returns once the
// server accepts connections, or at once with an error when it exits.
func (pg *postgres) start() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pg.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	// Durability is useless for a throw-away cluster: no fsync.
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
		pg.Port, pg.dir)
	out, err := pg.cmd(60*time.Second, "pg_ctl", "start", "-D", pg.dataDir(), "-l", pg.logPath(),
		"-o", opts, "-w", "-t", "30")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	return nil
}

// waitReady polls pg_isready on the TCP address SPIRE uses.
func (pg *postgres) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := pg.cmd(5*time.Second, "pg_isready", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-t", "1")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after %v: %v %s", timeout, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop runs `pg_ctl stop -m fast`; if that fails, it kills the postmaster
// whose PID is in postmaster.pid so that nothing is left running.
func (pg *postgres) stop(t *testing.T) {
	out, err := pg.cmd(30*time.Second, "pg_ctl", "stop", "-D", pg.dataDir(), "-m", "fast", "-w", "-t", "20")
	if err == nil {
		return
	}
	t.Errorf("pg_ctl stop: %v\n%s", err, out)
	if b, rerr := os.ReadFile(filepath.Join(pg.dataDir(), "postmaster.pid")); rerr == nil {
		if pid, perr := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])); perr == nil {
			syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown
		}
	}
}

// cmd runs a PostgreSQL program from pg.bin as the postgres user, in the
// scratch folder, and returns its combined output.
func (pg *postgres) cmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, filepath.Join(pg.bin, name), args...)
	c.Dir = pg.dir
	c.Env = append(os.Environ(), "HOME="+pg.dir, "PGUSER="+postgresUser, "LC_ALL=C")
	if pg.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	// pg_ctl start leaves the postmaster holding the output pipe: a log
	// file (-l) takes the server's output, so only wait for pg_ctl itself.
	c.WaitDelay = time.Second
	err := c.Run()
	return out.String(), err
}

// postgresBin finds the folder of the PostgreSQL server programs: initdb on
// $PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian does
// not put initdb on $PATH).
func postgresBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	t.Fatal("the PostgreSQL server programs (initdb, pg_ctl) are not installed: " +
		"`make test` installs them, or run `apt-get install -y postgresql`")
	return ""
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// postgresCred is the uid and gid of the postgres user when the test runs
// as root, nil (run as the current user) otherwise.
func postgresCred(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(postgresUser)
	if err != nil {
		t.Fatalf("PostgreSQL runs as the %q user: %v (apt-get install postgresql creates it)", postgresUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("user %s: uid %q gid %q", postgresUser, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
