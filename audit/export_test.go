package audit

// Syncs is the number of batches written and synced since Open (tests
// check that waiting callers share them).
func (w *Writer) Syncs() uint64 { return w.syncs.Load() }
