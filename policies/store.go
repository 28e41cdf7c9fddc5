package policies

import (
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
)

// Store holds the current Set for concurrent readers. The zero value holds
// no set and denies everything.
type Store struct {
	cur atomic.Pointer[Set]
}

// NewStore loads dir into a new Store; the Store is nil when dir has errors.
func NewStore(dir string) (*Store, hcl.Diagnostics) {
	s := &Store{}
	diags := s.Reload(dir)
	if diags.HasErrors() {
		return nil, diags
	}
	return s, diags
}

// Set returns the current set (nil before the first successful load).
func (s *Store) Set() *Set { return s.cur.Load() }

// Swap installs set and returns the previous one.
func (s *Store) Swap(set *Set) *Set { return s.cur.Swap(set) }

// Reload loads dir and, when it has no errors, installs the new set. On
// error the previous set stays in place. The diagnostics are returned
// either way.
func (s *Store) Reload(dir string) hcl.Diagnostics {
	set, diags := Load(dir)
	if set != nil {
		s.cur.Store(set)
	}
	return diags
}

// Decide asks the current set; with no set loaded it denies.
func (s *Store) Decide(in *Input) Decision { return s.cur.Load().Decide(in) }

// Explain asks the current set in trace mode.
func (s *Store) Explain(in *Input) Decision { return s.cur.Load().Explain(in) }
