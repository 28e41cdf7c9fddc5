// Package auditv1 is a frozen copy of agentid's audit writer before issue
// 13 (commit e33116d: the hash-chained log with x5c-signed checkpoints,
// format v1), kept only so that benchmarks can compare today's tlog v2
// writer and receipts with it in one run. Do not use it for anything else.
package auditv1
