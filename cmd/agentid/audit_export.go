package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/agentid/agentid/audit"
)

// recordFilter selects the records export and tail print.
type recordFilter struct {
	all   bool
	types stringList
	since string
	from  uint64

	sinceT time.Time
}

func (f *recordFilter) parse() error {
	if f.since != "" {
		t, err := time.Parse(time.RFC3339, f.since)
		if err != nil {
			return fmt.Errorf("%w: --since: %v", errUsage, err)
		}
		f.sinceT = t
	}
	return nil
}

// keep reports whether a line is printed: by default the decisions and the
// registrar's actions, not the log's own key, checkpoint, witnessed and
// segment records (--all prints every line).
func (f *recordFilter) keep(line []byte) (bool, error) {
	var h struct {
		Seq  uint64    `json:"seq"`
		Time time.Time `json:"time"`
		Type string    `json:"type"`
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return false, err
	}
	if h.Seq < f.from || (!f.sinceT.IsZero() && h.Time.Before(f.sinceT)) {
		return false, nil
	}
	if len(f.types) > 0 {
		return slices.Contains(f.types, h.Type), nil
	}
	return f.all || (h.Type != audit.TypeCheckpoint && h.Type != audit.TypeKey && h.Type != audit.TypeWitnessed && h.Type != audit.TypeSegment), nil
}

// eachLine calls fn with every complete line of r (without its newline).
func eachLine(r io.Reader, name string, fn func([]byte) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := bytes.Clone(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			if ferr := fn(line[:len(line)-1]); ferr != nil {
				return fmt.Errorf("%s: %w", name, ferr)
			}
		}
		if err == io.EOF {
			return nil // a torn last line (a writer killed mid-line) is not a record
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

func (env *cli) auditExport(args []string) error {
	fs := env.flags("audit export", "audit export [--all] [--type T]... [--since TIME] [--from-seq N] LOG\n\nWrites the log's records to stdout as JSON lines, every file of a rotated log\nin order, for shipping to a SIEM. Each line is the log's own line, unchanged\n(its hash is the Merkle leaf: a receipt's index is seq - 1). By default the\ndecisions and registrar actions; --all adds the key, checkpoint and\nwitnessed records. Export does not verify: run `agentid audit verify` too.")
	var f recordFilter
	fs.BoolVar(&f.all, "all", false, "every line, the log's key, checkpoint and witnessed records too")
	fs.Var(&f.types, "type", "only records of this type (decision, registrar, checkpoint, key, witnessed; repeatable)")
	fs.StringVar(&f.since, "since", "", "only records at or after this RFC 3339 time")
	fs.Uint64Var(&f.from, "from-seq", 0, "only records with seq ≥ N (resume an export)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: agentid audit export LOG", errUsage)
	}
	if err := f.parse(); err != nil {
		return err
	}
	files, err := logFiles(fs.Args())
	if err != nil {
		return err
	}
	out := bufio.NewWriterSize(env.stdout, 1<<16)
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			return err
		}
		err = eachLine(fh, name, func(line []byte) error {
			ok, err := f.keep(line)
			if ok {
				out.Write(line)
				err = out.WriteByte('\n')
			}
			return err
		})
		fh.Close()
		if err != nil {
			return err
		}
	}
	return out.Flush()
}

// followContext is how long `audit tail -f` follows: until SIGINT or
// SIGTERM (tests replace it).
var followContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func (env *cli) auditTail(args []string) error {
	fs := env.flags("audit tail", "audit tail [-n N] [-f] [--all] [--type T]... LOG\n\nPrints the last N records of the log as JSON lines (like audit export) and,\nwith -f, every record appended after, across rotations, until interrupted.")
	var f recordFilter
	n := fs.Int("n", 10, "how many records to print first")
	follow := fs.Bool("f", false, "follow: print records as they are appended (across rotations)")
	fs.BoolVar(&f.all, "all", false, "every line, the log's key, checkpoint and witnessed records too")
	fs.Var(&f.types, "type", "only records of this type (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *n < 0 {
		return fmt.Errorf("%w: agentid audit tail [-n N] [-f] LOG", errUsage)
	}
	path := fs.Arg(0)
	files, err := audit.Files(path)
	if err != nil {
		return err
	}
	// The last N kept lines, newest file first until there are enough.
	var last [][]byte
	var lastSeq uint64
	readNewest := false
	for i := len(files) - 1; i >= 0 && len(last) < *n; i-- {
		var kept [][]byte
		fh, err := os.Open(files[i])
		if err != nil {
			return err
		}
		newest := i == len(files)-1
		err = eachLine(fh, files[i], func(line []byte) error {
			if newest { // follow from the last line read, not from a second look
				var h struct {
					Seq uint64 `json:"seq"`
				}
				if json.Unmarshal(line, &h) == nil {
					lastSeq = h.Seq
				}
			}
			ok, err := f.keep(line)
			if ok {
				kept = append(kept, bytes.Clone(line))
			}
			return err
		})
		fh.Close()
		if err != nil {
			return err
		}
		readNewest = readNewest || newest
		last = append(kept[max(0, len(kept)-(*n-len(last))):], last...)
	}
	afterTailRead()
	if len(files) > 0 && !readNewest { // -n 0: from the end as it is now
		lastSeq, err = lastSeqOf(files[len(files)-1])
		if err != nil {
			return err
		}
	}
	for _, l := range last {
		env.stdout.Write(append(l, '\n'))
	}
	if !*follow {
		return nil
	}
	ctx, cancel := followContext()
	defer cancel()
	f.from = lastSeq + 1
	return env.follow(ctx, path, &f)
}

// afterTailRead runs between tail's first read and its follow (a test
// appends there).
var afterTailRead = func() {}

// lastSeqOf is the seq of a file's last complete line (0 if none).
func lastSeqOf(name string) (uint64, error) {
	fh, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var seq uint64
	err = eachLine(fh, name, func(line []byte) error {
		var h struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(line, &h) == nil {
			seq = h.Seq
		}
		return nil
	})
	return seq, err
}

// follow prints the records with seq ≥ f.from as they are appended to path,
// polling; when the writer rotates (the file is renamed and a new one
// created), the rotated files are read from f.from first.
func (env *cli) follow(ctx context.Context, path string, f *recordFilter) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var cur *os.File
	var partial []byte
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	emit := func(line []byte) error {
		var h struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(line, &h); err != nil {
			return err
		}
		if h.Seq < f.from {
			return nil
		}
		ok, err := f.keep(line)
		if ok {
			env.stdout.Write(append(bytes.Clone(line), '\n'))
		}
		f.from = h.Seq + 1
		return err
	}
	for {
		if cur != nil {
			// Read what was appended; a torn line waits for its end.
			data, err := io.ReadAll(cur)
			if err != nil {
				return err
			}
			partial = append(partial, data...)
			for {
				i := bytes.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				if err := emit(partial[:i]); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				partial = partial[i+1:]
			}
			// Rotated: the open file is no longer the log's path.
			st, err1 := cur.Stat()
			pst, err2 := os.Stat(path)
			if err1 == nil && (err2 != nil || !os.SameFile(st, pst)) {
				cur.Close()
				cur, partial = nil, nil
			}
		}
		if cur == nil {
			// Catch up from the rotated files, then open the current one.
			files, err := audit.Files(path)
			if err != nil {
				return err
			}
			for _, name := range files {
				if name == path {
					if cur, err = os.Open(path); err != nil {
						return err
					}
					continue
				}
				if seq, err := lastSeqOf(name); err != nil || seq < f.from {
					continue
				}
				fh, err := os.Open(name)
				if err != nil {
					return err
				}
				err = eachLine(fh, name, emit)
				fh.Close()
				if err != nil {
					return err
				}
			}
			if cur != nil {
				continue // read it now
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
