package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long the watch waits after a change for more
// before it reloads: editors and deploys write in bursts.
var watchDebounce = 100 * time.Millisecond

// policyWatch watches what the policy is loaded from. inotify follows a
// symbolic link once, when the watch is added, so watching policy_dir
// alone watches the release it pointed to at start: flipping the link to
// a new release (ln -sfn and rename, the usual atomic deploy) would go
// unseen, and the release then in force would not be watched at all. So
// the watch covers
//   - the directory policy_dir resolves to now (every change counts);
//   - the parent directory of each symbolic link policy_dir resolves
//     through (policy_dir itself or a folder above it) and of the
//     directory it resolves to, where only the changes of those names
//     count (a link replaced, or the directory replaced by a rename);
//   - the folders of the policy's data files (every change counts),
//     followed through their symbolic links the same way;
//
// when a component of a path is missing (a link removed before the new
// one is made), the folder it would be in is watched for it;
//
// and refresh moves it after each reload, before the load (so a change
// made while the new release loads is seen) and after (for the data
// files). A Kubernetes ConfigMap volume swaps its ..data link inside the
// mounted directory, a change in the directory itself.
type policyWatch struct {
	w   *fsnotify.Watcher
	dir string // policy_dir, absolute
	log *slog.Logger

	mu    sync.Mutex
	whole map[string]bool        // folders every change of which counts
	names map[string]bool        // paths whose own change counts (in the watched parent)
	added map[string]os.FileInfo // the folders added to w, with what they were
	// failed: the folders that could not be added at the last refresh,
	// with the error (logged when it first comes)
	failed map[string]string
}

func newPolicyWatch(dir string, log *slog.Logger) (*policyWatch, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &policyWatch{w: w, dir: abs, log: log, added: map[string]os.FileInfo{}}, nil
}

// resolve resolves the symbolic links of path (absolute) as the kernel
// does, component by component, and lists each link it went through (as
// the link's own path): policy_dir may be a link, or under one
// (/srv/app/current/policies with current -> releases/42). When a
// component is missing (a link removed and not made again yet), the
// error comes with the links so far and the missing path last, whose
// reappearance is what to watch for.
func resolve(path string) (links []string, resolved string, err error) {
	sep := string(filepath.Separator)
	vol := filepath.VolumeName(path)
	done := vol + sep
	rest := strings.Split(path[len(vol):], sep)
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return append(links, next), "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			done = next
			continue
		}
		if hops++; hops > 40 { // the kernel's limit
			return links, "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		links = append(links, next)
		target, err := os.Readlink(next)
		if err != nil {
			return links, "", err
		}
		if filepath.IsAbs(target) {
			v := filepath.VolumeName(target)
			done, target = v+sep, target[len(v):]
		}
		rest = append(strings.Split(target, sep), rest...)
	}
	return links, done, nil
}

// refresh watches what policy_dir resolves to now and the folders of
// dataFiles (each resolved the same way), and stops watching what it no
// longer needs. The error says that policy_dir itself is not watched.
func (p *policyWatch) refresh(dataFiles []string) error {
	whole, names := map[string]bool{}, map[string]bool{}
	want := map[string]bool{}
	follow := func(dir string) (string, error) {
		links, resolved, err := resolve(dir)
		if err == nil {
			whole[resolved] = true
			want[resolved] = true
			links = append(links, resolved) // replaced by a rename
		}
		for _, l := range links { // with a missing component last, on error
			names[l] = true
			want[filepath.Dir(l)] = true
		}
		return resolved, err
	}
	resolved, err := follow(p.dir)
	for _, f := range dataFiles {
		if d, err := filepath.Abs(filepath.Dir(f)); err == nil {
			follow(d)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.whole, p.names = whole, names
	failed := p.failed
	p.failed = map[string]string{}
	for path, was := range p.added {
		fi, statErr := os.Stat(path)
		if !want[path] || statErr != nil || !os.SameFile(fi, was) { // not needed, or replaced: watch again below
			p.w.Remove(path) // fails when the folder went away, which removed the watch
			delete(p.added, path)
		}
	}
	for path := range want {
		if _, ok := p.added[path]; ok {
			continue
		}
		fi, addErr := os.Stat(path)
		if addErr == nil {
			addErr = p.w.Add(path)
		}
		if addErr != nil {
			if path == resolved && err == nil {
				err = addErr
			}
			if msg := addErr.Error(); failed[path] != msg { // once, not at every reload
				p.log.Warn("policy watch: a folder cannot be watched; changes in it need SIGHUP", "path", path, "err", addErr)
			}
			p.failed[path] = addErr.Error()
			continue
		}
		p.added[path] = fi
	}
	return err
}

// relevant reports whether ev is a change of the policy.
func (p *policyWatch) relevant(ev fsnotify.Event) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.whole[filepath.Dir(ev.Name)] || p.whole[ev.Name] || p.names[ev.Name]
}

// run reports relevant changes on out, debounced, until the watcher is
// closed.
func (p *policyWatch) run(out chan<- struct{}) {
	var timer <-chan time.Time
	for {
		select {
		case ev, ok := <-p.w.Events:
			if !ok {
				return
			}
			if p.relevant(ev) {
				timer = time.After(watchDebounce)
			}
		case err, ok := <-p.w.Errors:
			if !ok {
				return
			}
			p.log.Warn("policy watch", "err", err)
		case <-timer:
			timer = nil
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}
}
