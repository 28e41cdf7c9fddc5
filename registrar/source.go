package registrar

import "sync/atomic"

// PolicySource gives the issuance policy in force. A *[Policy] is one; a
// *[PolicyHolder] is one that a daemon swaps on reload.
type PolicySource interface {
	// Policy returns the current policy, nil if there is none.
	Policy() *Policy
}

// PolicyHolder holds the policy loaded from a file and swaps it atomically
// on Reload, keeping the last good one when the file does not load:
// requests in flight see either the old or the new policy, never a mix.
type PolicyHolder struct {
	path string
	cur  atomic.Pointer[Policy]
}

// NewPolicyHolder loads the policy at path.
func NewPolicyHolder(path string) (*PolicyHolder, error) {
	h := &PolicyHolder{path: path}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// Policy returns the policy in force.
func (h *PolicyHolder) Policy() *Policy { return h.cur.Load() }

// Path is the file the holder loads.
func (h *PolicyHolder) Path() string { return h.path }

// Reload loads the file again. On error the policy in force stays.
func (h *PolicyHolder) Reload() error {
	p, err := LoadPolicy(h.path)
	if err != nil {
		return err
	}
	h.cur.Store(p)
	return nil
}
