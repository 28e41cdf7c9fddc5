// Package hclconf holds the small pieces the HCL configurations of the
// plugins share: reporting every error diagnostic with its position, and
// naming the key in gohcl's diagnostics about a value.
package hclconf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Format renders every error diagnostic after prefix, each as
// " [file:]line:col: summary; detail". withFile includes the file name.
func Format(prefix string, diags hcl.Diagnostics, withFile bool) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		b.WriteString(" ")
		if s := d.Subject; s != nil {
			if withFile {
				fmt.Fprintf(&b, "%s:", s.Filename)
			}
			fmt.Fprintf(&b, "%d:%d: ", s.Start.Line, s.Start.Column)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString("; " + d.Detail)
		}
	}
	return b.String()
}

// Errors returns the error diagnostics as one error (nil when there are
// none), one "file:line:col: summary; detail" line each, in the order
// given: the form the daemons print for a bad configuration file.
func Errors(diags hcl.Diagnostics) error {
	var errs []error
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += "; " + d.Detail
		}
		if s := d.Subject; s != nil {
			msg = fmt.Sprintf("%s:%d:%d: %s", s.Filename, s.Start.Line, s.Start.Column, msg)
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// NameKeys adds the key to gohcl's diagnostics about a value ("Unsuitable
// value type"), which point at the value but do not name the key.
func NameKeys(body *hclsyntax.Body, diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil {
			continue
		}
		for name, attr := range body.Attributes {
			if attr.Expr.Range().Overlaps(*d.Subject) {
				d.Summary += " for " + name
			}
		}
	}
	return diags
}

// PositionError is an error about a value, at the position of its
// attribute: "file:line:col: err".
type PositionError struct {
	Range hcl.Range
	Err   error
}

func (e *PositionError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %v", e.Range.Filename, e.Range.Start.Line, e.Range.Start.Column, e.Err)
}

func (e *PositionError) Unwrap() error { return e.Err }

// At places err at the attribute named by path in body: "name" at the top
// level, "block.name" in the first block of that type (and so on for
// nested blocks). err is returned unchanged (nil stays nil) when the
// attribute is not in the file.
func At(body *hclsyntax.Body, path string, err error) error {
	if err == nil || body == nil {
		return err
	}
	parts := strings.Split(path, ".")
	for _, typ := range parts[:len(parts)-1] {
		var next *hclsyntax.Body
		for _, b := range body.Blocks {
			if b.Type == typ {
				next = b.Body
				break
			}
		}
		if next == nil {
			return err
		}
		body = next
	}
	attr, ok := body.Attributes[parts[len(parts)-1]]
	if !ok {
		return err
	}
	return &PositionError{Range: attr.Expr.Range(), Err: err}
}
