package policies

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// File is one policy source.
type File struct {
	// Name is used in diagnostics and rule references, e.g. "kb.hcl".
	Name string
	Src  []byte
	// Path is where the file was read from, if from disk: a test's
	// peer certificate path is relative to its folder (default: the
	// current folder).
	Path string
}

// Load reads, checks and compiles every policy file (*.hcl except
// *_test.hcl) in dir. Loading is all-or-nothing: when the diagnostics hold
// an error the Set is nil. Warnings come with a non-nil Set.
//
// dir may be a symbolic link flipped to a new release while Load runs
// (an atomic deploy: ln -sfn and rename), or a Kubernetes ConfigMap volume
// whose ..data link is swapped: Load resolves dir once and reads the
// policy files and the data files inside it from the resolved directory,
// then checks that nothing it read changed meanwhile (dir resolving
// elsewhere, a file added, removed or replaced). If something did, it
// starts again, up to [MaxLoadAttempts] times, and then fails: the Set
// is always one whole release, never one release's file list with
// another's contents.
func Load(dir string) (*Set, hcl.Diagnostics) {
	for attempt := 1; ; attempt++ {
		snap, err := readDir(dir)
		if err != nil {
			if snap != nil && attempt < MaxLoadAttempts && !snap.unchanged(dir, nil) {
				continue // a file listed went away in a change: read the new state
			}
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read policy directory", Detail: err.Error()}}
		}
		l := newLoader(dir)
		l.root = snap.root
		set, diags := l.load(snap.files)
		if snap.unchanged(dir, l.reads) {
			return set, diags
		}
		if attempt == MaxLoadAttempts {
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Policy directory changed while it was read",
				Detail: fmt.Sprintf("%s changed while it was read, %d times in a row (a deploy in progress?); the policy was not loaded: load it again once the change is complete.", dir, attempt)}}
		}
	}
}

// MaxLoadAttempts bounds how often [Load] starts again when the directory
// changed while it was read.
const MaxLoadAttempts = 4

// ReadDir returns the policy files of dir (not the test files), sorted by
// name, all read from the directory dir resolves to when ReadDir starts.
func ReadDir(dir string) ([]File, error) {
	snap, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	return snap.files, nil
}

// fileRead is a file as read: its path and what the open file was.
type fileRead struct {
	path string
	fi   os.FileInfo
}

// dirSnapshot is one read of a policy directory.
type dirSnapshot struct {
	root   string      // dir with its symbolic links resolved
	rootFI os.FileInfo // the directory root was
	names  []string    // the *.hcl names listed (test files included)
	files  []File
	reads  []fileRead
}

// readDir reads dir once. On an error reading a listed file it returns the
// snapshot so far too, for Load to see whether dir changed meanwhile.
func readDir(dir string) (*dirSnapshot, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	snap := &dirSnapshot{root: root}
	if snap.rootFI, err = os.Stat(root); err != nil {
		return nil, err
	}
	if snap.names, err = listHCL(root); err != nil {
		return nil, err
	}
	if loadHook != nil {
		loadHook("listed")
	}
	for _, name := range snap.names {
		if IsTestFile(name) {
			continue
		}
		p := filepath.Join(root, name)
		src, fi, err := readFile(p, -1)
		if err != nil {
			return snap, err
		}
		snap.files = append(snap.files, File{Name: name, Src: src})
		snap.reads = append(snap.reads, fileRead{p, fi})
	}
	return snap, nil
}

// listHCL lists the *.hcl names in dir, sorted.
func listHCL(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if ok, _ := filepath.Match("*.hcl", e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// readFile reads the file at path, refusing more than limit bytes (limit
// < 0: no limit), and returns what the open file was.
func readFile(path string, limit int64) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, fmt.Errorf("%s is a directory", path)
	}
	if limit >= 0 && fi.Size() > limit {
		return nil, nil, fmt.Errorf("%s has %d bytes, more than the %d a data file may have", path, fi.Size(), limit)
	}
	r := io.Reader(f)
	if limit >= 0 {
		r = io.LimitReader(f, limit+1)
	}
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	if limit >= 0 && int64(len(src)) > limit {
		return nil, nil, fmt.Errorf("%s has more than the %d bytes a data file may have", path, limit)
	}
	return src, fi, nil
}

// unchanged reports whether dir still resolves to the directory read, with
// the same *.hcl names, and every file read (policy and data files) is
// still the file that was read, unmodified.
func (snap *dirSnapshot) unchanged(dir string, data []fileRead) bool {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil || root != snap.root {
		return false
	}
	if fi, err := os.Stat(root); err != nil || !os.SameFile(fi, snap.rootFI) {
		return false
	}
	if names, err := listHCL(root); err != nil || !slices.Equal(names, snap.names) {
		return false
	}
	for _, r := range slices.Concat(snap.reads, data) {
		fi, err := os.Stat(r.path)
		if err != nil || !os.SameFile(fi, r.fi) || fi.Size() != r.fi.Size() || !fi.ModTime().Equal(r.fi.ModTime()) {
			return false
		}
	}
	return true
}

// loadHook, when set (by a test), runs at steps of a load: "listed"
// between listing the policy directory and reading its files, "data"
// before reading a data file.
var loadHook func(step string)

// IsTestFile reports whether a path names a test file: *_test.hcl or a
// file under a tests/ directory.
func IsTestFile(path string) bool {
	p := filepath.ToSlash(path)
	return strings.HasSuffix(p, "_test.hcl") || strings.HasPrefix(p, "tests/") || strings.Contains(p, "/tests/")
}

// LoadFiles checks and compiles policy sources; see [Load]. The files of
// data blocks are relative to the current directory.
func LoadFiles(files []File) (*Set, hcl.Diagnostics) { return newLoader(".").load(files) }

func newLoader(dir string) *loader {
	return &loader{vars: map[string]cty.Value{}, varDefs: map[string]hcl.Range{}, ruleDefs: map[string]hcl.Range{}, varUsed: map[string]bool{}, srcs: map[string][]byte{},
		dir: dir, data: map[string]*dataSource{}, dataDefs: map[string]hcl.Range{}}
}

func (l *loader) load(files []File) (*Set, hcl.Diagnostics) {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return cmp.Compare(a.Name, b.Name) })
	var bodies []*hcl.BodyContent
	for _, f := range sorted {
		if c := l.parse(f); c != nil {
			bodies = append(bodies, c)
		}
	}
	for _, c := range bodies {
		l.variables(c)
	}
	l.varObj = cty.ObjectVal(l.vars)
	for _, c := range bodies {
		l.dataBlocks(c)
	}
	l.dataObj = l.dataValue()
	for _, c := range bodies {
		l.rules(c)
		if a := c.Attributes["require_signature"]; a != nil && l.boolean(a) {
			l.requireSig = true
		}
	}
	if len(l.compiled) == 0 && !l.diags.HasErrors() {
		detail := "The policy files define no rule: every request is denied."
		if len(sorted) == 0 {
			detail = "There is no policy file (*.hcl): every request is denied."
		}
		l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "No rules", Detail: detail})
	}
	if !l.diags.HasErrors() {
		l.lint()
	}
	sortDiags(l.diags)
	if l.diags.HasErrors() {
		return nil, l.diags
	}
	return l.build(sorted), l.diags
}

type loader struct {
	diags    hcl.Diagnostics
	vars     map[string]cty.Value
	varObj   cty.Value
	varDefs  map[string]hcl.Range
	varUsed  map[string]bool
	ruleDefs map[string]hcl.Range
	compiled []*rule
	srcs     map[string][]byte
	evalCtx  *hcl.EvalContext // load-time context, built once varObj is set
	testDir  string           // folder of the test file being read
	dir      string           // the policy directory, for data files
	// root is dir with its symbolic links resolved, once per load: data
	// files inside the directory are read from there ("" : dir)
	root     string
	reads    []fileRead // the data files read
	data     map[string]*dataSource
	dataDefs map[string]hcl.Range
	dataObj  cty.Value
	roots    rootSet
	// dataBroken: a condition uses a data source whose file did not load
	dataBroken bool
	nfas       map[string]*globNFA // by pattern middle, shared by equal ones
	usesArgs   bool                // a condition reads action.arguments
	requireSig bool                // a file says require_signature = true
	// peerAttrs: the peer attributes conditions read by name; peerAll: one
	// reads the peer whole (or by a computed key)
	peerAttrs map[string]bool
	peerAll   bool
}

var fileSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "require_signature"}}, Blocks: []hcl.BlockHeaderSchema{
	{Type: "variable", LabelNames: []string{"name"}},
	{Type: "rule", LabelNames: []string{"name"}},
	{Type: "data", LabelNames: []string{"name"}},
}}

func (l *loader) parse(f File) *hcl.BodyContent {
	l.srcs[f.Name] = f.Src
	file, diags := hclsyntax.ParseConfig(f.Src, f.Name, hcl.InitialPos)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return nil
	}
	content, diags := file.Body.Content(fileSchema)
	l.diags = append(l.diags, diags...)
	return content
}

var variableSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "value", Required: true},
	{Name: "description"},
}}

func (l *loader) variables(c *hcl.BodyContent) {
	for _, b := range c.Blocks {
		if b.Type != "variable" {
			continue
		}
		name := b.Labels[0]
		if !l.checkName("variable", name, b, l.varDefs) {
			continue
		}
		content, diags := b.Body.Content(variableSchema)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		v, diags := content.Attributes["value"].Expr.Value(&hcl.EvalContext{Functions: functions})
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		if !v.IsWhollyKnown() || v.IsNull() {
			l.errorf(content.Attributes["value"].Expr.Range(), "Invalid variable value", "The value of variable %q must be a known, non-null value.", name)
			continue
		}
		l.vars[name] = v
	}
}

// checkName rejects invalid and duplicate block names.
func (l *loader) checkName(kind, name string, b *hcl.Block, defs map[string]hcl.Range) bool {
	if kind == "test" && strings.TrimSpace(name) == "" || kind != "test" && !hclsyntax.ValidIdentifier(name) {
		l.errorf(b.LabelRanges[0], "Invalid "+kind+" name", "%q is not a valid name: use letters, digits, underscores and dashes, starting with a letter.", name)
		return false
	}
	if prev, dup := defs[name]; dup {
		l.errorf(b.LabelRanges[0], "Duplicate "+kind, "A %s named %q was already defined at %s.", kind, name, prev)
		return false
	}
	defs[name] = b.DefRange
	return true
}

func (l *loader) errorf(rng hcl.Range, summary, format string, args ...any) {
	r := rng
	l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: &r})
}

func (l *loader) warnf(rng hcl.Range, summary, format string, args ...any) {
	r := rng
	l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: &r})
}

func (l *loader) rules(c *hcl.BodyContent) {
	for _, b := range c.Blocks {
		if b.Type != "rule" || !l.checkName("rule", b.Labels[0], b, l.ruleDefs) {
			continue
		}
		if r := l.rule(b); r != nil {
			r.index = int32(len(l.compiled))
			l.compiled = append(l.compiled, r)
		}
	}
}

func (l *loader) build(files []File) *Set {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.Name, len(f.Src))
		h.Write(f.Src)
	}
	names := make([]string, 0, len(l.data))
	for n := range l.data {
		names = append(names, n)
	}
	slices.Sort(names)
	var dataFiles []string
	for _, n := range names {
		ds := l.data[n]
		fmt.Fprintf(h, "data\x00%s\x00%d\x00", n, len(ds.src))
		h.Write(ds.src)
		dataFiles = append(dataFiles, ds.path)
	}
	s := &Set{rules: l.compiled, vars: l.varObj, data: l.dataObj, dataFiles: dataFiles, roots: l.roots, usesArgs: l.usesArgs, requireSig: l.requireSig,
		peerAttrs: l.peerAttrs,
		digest:    "sha256:" + hex.EncodeToString(h.Sum(nil))}
	for _, r := range l.compiled {
		if r.cond != nil {
			s.conds = true
		}
	}
	s.deny = buildIndex(l.compiled, Deny)
	s.allow = buildIndex(l.compiled, Allow)
	return s
}

func sortDiags(d hcl.Diagnostics) {
	slices.SortStableFunc(d, func(a, b *hcl.Diagnostic) int {
		if a.Subject == nil || b.Subject == nil {
			return cmp.Compare(boolInt(a.Subject != nil), boolInt(b.Subject != nil))
		}
		return cmp.Or(cmp.Compare(a.Subject.Filename, b.Subject.Filename),
			cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte),
			cmp.Compare(a.Severity, b.Severity))
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dataValue is the object of the data sources, conditions' data.
func (l *loader) dataValue() cty.Value {
	if len(l.data) == 0 {
		return cty.EmptyObjectVal
	}
	m := make(map[string]cty.Value, len(l.data))
	for n, ds := range l.data {
		m[n] = ds.val
	}
	return cty.ObjectVal(m)
}
