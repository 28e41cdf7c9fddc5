// Package attestor binds agent tasks to Linux processes: the launcher side
// writes a task manifest for its own PID and start time and then execs the
// agent ([Launch]); the attestor side maps a PID back to the task's
// selectors ([Attestor.Attest]). It reads /proc and has no SPIRE imports;
// plugins/workloadattestor adapts it to SPIRE's WorkloadAttestor interface.
//
// # Manifests
//
// A manifest ([Manifest]) is a JSON file named "<pid>.json" in the manifest
// directory (default [DefaultManifestDir]):
//
//	{"version":2,"pid":4242,"start_time":987654,"exe_sha256":"…","incarnation":"<32 hex>","claims":{…canonical svid claims…}}
//
// The incarnation names the registration entry the process was launched
// for (from the [TaskRecord]): the attestor emits it, so the process of a
// revoked task never matches the entry of its task ID created again.
// start_time is field 22 of /proc/<pid>/stat. (pid, start_time) names one
// process for the life of the machine, so a manifest left behind by a
// process that exited can never be taken by a later process that reuses the
// PID. Manifests are written atomically (temporary file in the same
// directory, then rename) with mode 0640.
//
// # What the attestor checks
//
// For a PID, [Attestor.Resolve] reads /proc/<pid>/stat and then:
//
//  1. the manifest directory must not be a symlink, must be owned by root or
//     an allowed uid, and must not be world-writable (a missing directory
//     simply holds no manifests);
//  2. <dir>/<pid>.json is opened with O_NOFOLLOW|O_NONBLOCK and checked on
//     the opened descriptor: a regular file with one link, owned by an
//     allowed uid (default: root and the attestor's effective uid), not
//     writable by group or others, at most [MaxManifestSize] bytes;
//  3. it must parse strictly ([ParseManifest]: version, namespaces, no
//     unknown, repeated or case-variant keys, claims that pass svid's
//     checks) and name the same PID;
//  4. its start_time must equal the process's; otherwise the manifest is
//     stale (the PID was reused), it is removed and the search goes on as
//     if there were none;
//  5. the task's deadline must not have passed;
//  6. the process holding it must be in the user and mount namespaces it
//     was launched in (user_ns, mnt_ns; [ReasonNamespace]), checked after
//     its executable is hashed;
//  7. with RequireExeSHA256, the SHA-256 of /proc/<pid>/exe (cached by
//     device, inode, size, mtime and ctime) must equal exe_sha256;
//  8. unless AllowSameUser (insecure, single-user development), the process
//     and the one holding the manifest must not be able to forge manifests
//     ([CouldForge], from /proc/<pid>/status: uids, gids, groups and
//     capabilities against the directory's owner, group and mode, and the
//     allowed manifest owners).
//
// An accepted manifest yields the task's selectors ([Manifest.Selectors]:
// the task-scoped layout, then the v1 layout for entries written before it)
// followed by the executable pins ([Manifest.ExeSelectors]) of the real
// /proc/<pid>/exe of the process holding it — none when that executable is
// on a mount outside the process's mount namespace or in a mount namespace
// the process's uid created ([DigestCache.ProcessExeDigest]): on an overlay
// it mounted itself, an agent can change the bytes /proc/<pid>/exe reads
// while it runs something else.
//
// A process without a manifest of its own is searched for in its
// ancestors, up to InheritDepth levels, so that the tools an agent spawns
// share its task; every ancestor on the walk must have started no later
// than its child (else its PID was reused). The first manifest found
// decides: a refused manifest (steps 1–3, 5–8) yields no selectors and a
// warning naming the file and the [Reason]; the walk does not go past it.
//
// # Launching as another user
//
// [Launch] with User set drops to that unprivileged identity after writing
// the manifest and before exec ([DropPrivileges]), and [Launch.CheckUser]
// refuses identities that could forge manifests.
//
// # Stale manifests
//
// Launchers hold a shared flock(2) on the directory while they write;
// removals ([GC], the launcher's clean-up before it writes, the attestor's
// removal of a stale manifest it met) hold it exclusively and re-check the
// file under it, so a removal never deletes a manifest that was just
// written for a new process with a reused PID.
package attestor
