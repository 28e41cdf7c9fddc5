package policies

import (
	"fmt"
	"math/big"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
	"go.yaml.in/yaml/v3"
)

// MaxDataFile bounds one data file (the whole value is kept in memory).
const MaxDataFile = 64 << 20

// dataSource is a loaded data block.
type dataSource struct {
	path string // as read
	src  []byte
	val  cty.Value
}

var dataSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "file", Required: true},
	{Name: "format"},
	{Name: "description"},
}}

// dataBlocks loads every data block: data "name" { file = "users.json" }
// reads a JSON or YAML file (relative to the policy directory) whose value
// conditions read as data.name. Errors in the file name its line and
// column.
func (l *loader) dataBlocks(c *hcl.BodyContent) {
	for _, b := range c.Blocks {
		if b.Type != "data" {
			continue
		}
		name := b.Labels[0]
		if !l.checkName("data source", name, b, l.dataDefs) {
			continue
		}
		content, diags := b.Body.Content(dataSchema)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		path, ok := l.str(content.Attributes["file"])
		if !ok {
			continue
		}
		rng := content.Attributes["file"].Expr.Range()
		format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
		if a := content.Attributes["format"]; a != nil {
			if format, ok = l.str(a); !ok {
				continue
			}
			rng = a.Expr.Range()
		}
		if format == "yml" {
			format = "yaml"
		}
		if format != "json" && format != "yaml" {
			l.errorf(rng, "Unknown data format", "The data file %q is neither JSON (.json) nor YAML (.yaml, .yml); set format = \"json\" or \"yaml\".", path)
			continue
		}
		full := path
		switch {
		case filepath.IsLocal(path) && l.root != "":
			full = filepath.Join(l.root, path) // the release the policy files were read from
		case !filepath.IsAbs(path):
			full = filepath.Join(l.dir, path)
		}
		if loadHook != nil {
			loadHook("data")
		}
		src, fi, err := readFile(full, MaxDataFile)
		if err != nil {
			l.errorf(content.Attributes["file"].Expr.Range(), "Unreadable data file", "%v.", err)
			continue
		}
		l.reads = append(l.reads, fileRead{full, fi})
		var v cty.Value
		if format == "json" {
			v = l.jsonData(src, path)
		} else {
			v = l.yamlData(src, path)
		}
		if v == cty.NilVal {
			continue
		}
		l.data[name] = &dataSource{path: full, src: src, val: v}
	}
}

// jsonData reads JSON with HCL's JSON parser, whose diagnostics carry
// file:line:col; duplicate keys are refused.
func (l *loader) jsonData(src []byte, name string) cty.Value {
	expr, diags := hcljson.ParseExpression(src, name)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal
	}
	v, diags := expr.Value(nil)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal
	}
	return v
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func (l *loader) yamlData(src []byte, name string) cty.Value {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		msg := err.Error()
		pos := hcl.Pos{Line: 1, Column: 1}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			pos.Line, _ = strconv.Atoi(m[1])
			msg = msg[len(m[0]):]
		}
		l.errorf(hcl.Range{Filename: name, Start: pos, End: pos}, "Invalid YAML", "%s.", strings.TrimPrefix(msg, "yaml: "))
		return cty.NilVal
	}
	if len(doc.Content) == 0 {
		return cty.EmptyObjectVal
	}
	v, err := yamlValue(doc.Content[0], 0)
	if err != nil {
		n := err.node
		pos := hcl.Pos{Line: n.Line, Column: n.Column}
		l.errorf(hcl.Range{Filename: name, Start: pos, End: pos}, "Unsupported YAML", "%s.", err.msg)
		return cty.NilVal
	}
	return v
}

type yamlErr struct {
	node *yaml.Node
	msg  string
}

// yamlValue converts a YAML node to the value JSON would give: mappings
// with string keys become objects, sequences tuples, scalars strings,
// numbers, bools or null.
func yamlValue(n *yaml.Node, depth int) (cty.Value, *yamlErr) {
	if depth > 64 {
		return cty.NilVal, &yamlErr{n, "nested deeper than 64 levels"}
	}
	switch n.Kind {
	case yaml.AliasNode:
		return yamlValue(n.Alias, depth+1)
	case yaml.MappingNode:
		m := make(map[string]cty.Value, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!bool" && k.Tag != "!!float") {
				return cty.NilVal, &yamlErr{k, "a mapping key must be a string"}
			}
			if _, dup := m[k.Value]; dup {
				return cty.NilVal, &yamlErr{k, fmt.Sprintf("duplicate key %q", k.Value)}
			}
			v, err := yamlValue(n.Content[i+1], depth+1)
			if err != nil {
				return cty.NilVal, err
			}
			m[k.Value] = v
		}
		return cty.ObjectVal(m), nil
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return cty.EmptyTupleVal, nil
		}
		vs := make([]cty.Value, len(n.Content))
		for i, c := range n.Content {
			v, err := yamlValue(c, depth+1)
			if err != nil {
				return cty.NilVal, err
			}
			vs[i] = v
		}
		return cty.TupleVal(vs), nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return cty.NullVal(cty.DynamicPseudoType), nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return cty.NilVal, &yamlErr{n, err.Error()}
			}
			return cty.BoolVal(b), nil
		case "!!int", "!!float":
			f, _, err := big.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 0, 512, big.ToNearestEven)
			if err != nil {
				return cty.NilVal, &yamlErr{n, fmt.Sprintf("%q is not a number JSON can hold", n.Value)}
			}
			return cty.NumberVal(f), nil
		case "!!str", "!!timestamp":
			return cty.StringVal(n.Value), nil
		}
		return cty.NilVal, &yamlErr{n, fmt.Sprintf("unsupported tag %s", n.Tag)}
	}
	return cty.NilVal, &yamlErr{n, "unsupported YAML node"}
}

// checkData refuses data.<name> for a name no data block defines.
func (l *loader) checkData(e hcl.Expression) {
	for _, t := range e.Variables() {
		if t.RootName() != "data" {
			continue
		}
		if len(t) < 2 {
			l.errorf(t.SourceRange(), "Data source needed", "Use data.<name>, the value of one data block.")
			continue
		}
		var name string
		switch s := t[1].(type) {
		case hcl.TraverseAttr:
			name = s.Name
		case hcl.TraverseIndex:
			if s.Key.Type() == cty.String {
				name = s.Key.AsString()
			}
		}
		if _, ok := l.dataDefs[name]; ok {
			if _, loaded := l.data[name]; !loaded {
				l.dataBroken = true // its error is reported already
			}
			continue
		}
		{
			names := make([]string, 0, len(l.data))
			for n := range l.data {
				names = append(names, n)
			}
			l.errorf(t.SourceRange(), "Unknown data source", "There is no data source named %q.%s", name, didYouMean(name, names))
		}
	}
}
