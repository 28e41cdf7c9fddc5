// Package audit is agentid's tamper-evident decision log.
//
// Every decision of the verifier (and every registrar action) is one JSON
// line. Each line carries, in "prev", the SHA-256 of the previous line's
// bytes, so that removing, reordering or editing any line breaks the chain
// at the next one. Periodically the writer appends a checkpoint line signed
// with the verifier's own X.509-SVID key (the certificate chain travels in
// the line), so that the chain up to that point is bound to an identity the
// trust bundle vouches for: an attacker who rewrites the file must re-sign
// every checkpoint with a key the bundle trusts.
//
// # Durability
//
// [Writer.Append] queues the record and returns; a background loop writes
// queued records in batches — what is queued plus what arrives within
// Options.BatchDelay (default 2 ms) of the batch's first record — and, with
// the default [SyncBatch] durability, calls fsync once per batch before
// acknowledging the batch to [Writer.Flush]. Appending takes a lock and
// wakes the writer only when the queue was empty, so callers do not pay a
// goroutine switch per record. A crash (kill -9) loses at most the batch that was being
// written; never an earlier line, because a reopened log truncates a torn
// last line and continues the chain from the last complete one.
// [SyncEvery] syncs every record (batches of one); [SyncNone] leaves syncing
// to the operating system.
//
// # Rotation
//
// When the file grows beyond MaxBytes it is renamed to
// <name>.<first-seq>.<ext> and a new file starts whose first line's "prev"
// is the hash of the last line of the previous file, so the chain spans
// files. [Files] lists a log's files in order for [Verify].
//
// # Tree index
//
// Beside the log the Writer keeps <path>.tree ([TreeIndexPath]): the
// Merkle tree's node hashes in golang.org/x/mod/sumdb/tlog's stored-hash
// order, so that [ProveIndexed] makes a receipt from a few reads instead
// of reading the whole log ([Prove]). It is checked against the log at
// every Open and every proof built from it is checked against the signed
// checkpoint read from the log: it is never trusted.
//
// # Rotation, retention and the SQL store
//
// Every rotated file after the first starts with a segment record (the
// log's origin and the Merkle tree state before it), so that the files
// left by retention (Options.MaxSegments) verify, prove and reopen on
// their own. [OpenSQL] keeps a log in a MariaDB/MySQL table instead of
// files (one writer per log, a batch per transaction, receipts answered at
// commit); [DumpSQL] writes it back as a file for Verify and Prove.
package audit
