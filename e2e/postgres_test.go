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
// authentication, run by the postgres user as a child of the test process
// (so that it dies with it, even on SIGKILL: Pdeathsig) and shut down
// (fast) when the test ends.
type postgres struct {
	Port     int
	Database string
	dir      string // scratch folder owned by postgres: data/, postgres.log, sockets
	bin      string // folder of initdb, postgres, pg_isready, createdb
	cred     *syscall.Credential
	server   *exec.Cmd
	exited   chan error // the server's exit, once
}

// postgresUser is the system account that owns and runs the cluster
// (PostgreSQL refuses to run as root).
const postgresUser = "postgres"

// startPostgres initialises and starts a cluster with database db. There is
// no skip: without the PostgreSQL server binaries the test fails (`make
// test` installs them).
func startPostgres(t testing.TB, db string) *postgres {
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
		err := pg.start(30 * time.Second)
		if err == nil {
			break
		}
		if attempt == 2 || !strings.Contains(pg.log(), "could not bind") {
			t.Fatalf("postgres did not start: %v", err)
		}
		t.Logf("postgres: retrying on another port: %v", err)
	}
	t.Cleanup(func() { pg.stop(t) })
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

// start runs the postgres server on a fresh port, as a child that gets
// SIGQUIT (immediate shutdown) when the test process dies, and waits until
// it accepts connections or exits.
func (pg *postgres) start(timeout time.Duration) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pg.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	logf, err := os.OpenFile(pg.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// Durability is useless for a throw-away cluster: no fsync.
	c := exec.Command(filepath.Join(pg.bin, "postgres"), "-D", pg.dataDir(),
		"-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-k", pg.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	c.Dir = pg.dir
	c.Env = append(os.Environ(), "HOME="+pg.dir, "LC_ALL=C")
	c.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred, Pdeathsig: syscall.SIGQUIT}
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	pg.server, pg.exited = c, make(chan error, 1)
	go func() {
		pg.exited <- c.Wait()
		logf.Close()
	}()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-pg.exited:
			pg.exited <- err // for stop
			return fmt.Errorf("postgres exited: %v", err)
		default:
		}
		// Through the unix socket in our own folder: only our server
		// makes it, so another cluster that took the port cannot answer.
		if _, err := pg.cmd(5*time.Second, "pg_isready", "-h", pg.dir, "-p", strconv.Itoa(pg.Port), "-t", "1"); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			pg.server.Process.Signal(syscall.SIGQUIT) // nothing left running
			pg.exited <- <-pg.exited
			return fmt.Errorf("postgres not accepting connections after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks for a fast shutdown (SIGINT) and waits; if the server is still
// running after 20 s it is killed, so that nothing is left running.
func (pg *postgres) stop(t testing.TB) {
	if pg.server == nil {
		return
	}
	select {
	case <-pg.exited: // already gone
		return
	default:
	}
	pg.server.Process.Signal(syscall.SIGINT)
	select {
	case <-pg.exited:
		return
	case <-time.After(20 * time.Second):
	}
	t.Errorf("postgres did not shut down within 20 s: killing it")
	pg.server.Process.Kill()
	<-pg.exited
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
	err := c.Run()
	return out.String(), err
}

// postgresBin finds the folder of the PostgreSQL server programs: initdb on
// $PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian does
// not put initdb on $PATH).
func postgresBin(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
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
	t.Fatal("the PostgreSQL server programs (initdb, postgres) are not installed: " +
		"`make test` installs them, or run `apt-get install -y postgresql`")
	return ""
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// postgresCred is the uid and gid of the postgres user when the test runs
// as root, nil (run as the current user) otherwise.
func postgresCred(t testing.TB) *syscall.Credential {
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
