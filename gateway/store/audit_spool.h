/* audit_spool.h: the audit spool ([audit] spool): the records of what already happened that the
 * gateway could not write before it stopped (kept audit entries, queued incidents, counted
 * refusals), each entry exactly as gw_audit_write_kept takes it (statements with their SQL and
 * parameters, and the audit records, which take their time and place in the chain when they are
 * chained), so that writing it at the next start is the write that did not happen.
 *
 * The file is authenticated: an HMAC (gw_audit_writer_mac: HMAC-SHA256 under the aes suite,
 * HMAC-SM3 under sm) under a key derived from the keyring's audit key with the label
 * "waygate spool v1" (gw_audit_spool_keys_add), over everything before it, the chain id
 * included: a spool is replayed only by the keyring and chain that wrote it. Whoever can write
 * the directory can delete or replace the file but not forge or alter an entry.
 *
 * Each entry is written at most once: its first statement is its mark (GW_AUDIT_SPOOL_MARK_SQL,
 * sql/052_audit_spool_entry.sql), an INSERT of the random id of the spool it was first added to
 * and its index there, committed in the entry's own transaction; an entry whose mark is there
 * already fails on it (SQLSTATE 23505 at its statement 0, gw_audit_spool_met_mark) and writes
 * nothing: a file replayed again (a hard kill during its replay, or a copy put back later) is
 * skipped entry by entry. An entry carried into a later spool keeps its mark.
 *
 * Format (integers big-endian):
 *   "WGSPOOL2"                          magic and version ("WGSPOOL1": the same without the
 *                                       marks, read so that an upgrade loses nothing, its
 *                                       entries then written without the at-most-once check)
 *   u8 n, chain[n]                      the writer's chain id
 *   u32 entries
 *   entries, each: u32 length, then
 *     u8 flags (1: in doubt), [u64 seq, 32-byte hash: its transaction's last record]
 *     u8 nstmts, u8 nrecs
 *     each statement: u32 n, sql[n]; u8 result_format; u16 nparams;
 *                     each parameter: u8 0 (NULL) | 1 (text) | 2 (binary), [u32 n, bytes[n]]
 *     each record: 12 texts (actor role peer cert branch action object purpose legal_basis
 *                  approval outcome detail), each u8 0 (absent) | 1, [u16 n, bytes[n]];
 *                  u64 count (two's complement, -1: absent); u8 confidential
 *   32-byte MAC
 * A text parameter or field holds no NUL byte. Nothing is read before the MAC verifies; any
 * byte left over, or missing, or (v2) an entry whose first statement is not its mark, refuses the
 * whole file. */
#ifndef GW_STORE_AUDIT_SPOOL_H
#define GW_STORE_AUDIT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "audit_signer.h"
#include "crypto.h"
#include "err.h"

struct gw_audit_spool;

/* An entry's mark: the spool's id (GW_AUDIT_SPOOL_ID_LEN bytes, binary) and its index there. */
#define GW_AUDIT_SPOOL_MARK_SQL                                                                    \
    "INSERT INTO audit_spool_entry (spool, idx) VALUES ($1, $2::integer)"
#define GW_AUDIT_SPOOL_ID_LEN 16
/* Whether e's first statement is a mark (an id of the right length, a decimal index). */
bool gw_audit_spool_marked(const struct gw_audit_left *e);
/* Whether a marked entry's write failed on its mark: written already. */
bool gw_audit_spool_met_mark(const struct gw_db_result *res);

/* The bound of one entry (gw_audit_spool_add refuses a larger one). */
#define GW_AUDIT_SPOOL_ENTRY_MAX 16384
/* What an entry takes in a file, on average, for a file's cap: the entries the gateway keeps (an
 * incident's row with its record, a config.reload or refusal's record, an account log row, a bulk
 * run's claim) take 0.3-1 KiB (it:test_spool.py checks an incident's and a config.reload's under
 * 1 KiB each), so twice that; and only half of [audit] queue_max is ever kept. A file is read
 * whole before its MAC is checked: the cap is what a planted file can make a start allocate. */
#define GW_AUDIT_SPOOL_ENTRY_BUDGET 2048
/* A file's cap for n entries: n at GW_AUDIT_SPOOL_ENTRY_BUDGET each, and room for one at
 * GW_AUDIT_SPOOL_ENTRY_MAX, so that any single entry fits. A stop with more left than that
 * writes no spool (gw_audit_spool_save: GW_ETOOBIG) and counts them as lost. */
size_t gw_audit_spool_cap(size_t entries);

/* An empty spool with an id of its own (random). NULL when it cannot be made, with *err (err may
 * be NULL) GW_ENOMEM, or GW_ECRYPTO when no random bytes for its id (RAND_bytes failed); 0 else. */
struct gw_audit_spool *gw_audit_spool_new(int *err);
/* The format version of a spool read (1 or 2; 2 for one being written). */
int gw_audit_spool_version(const struct gw_audit_spool *sp);
/* Wipes and frees. NULL-safe. */
void gw_audit_spool_free(struct gw_audit_spool *sp);

/* Adds a copy of e, marked (this spool's id, its index) unless it is already. Returns 0,
 * GW_EINVAL (no room for its mark: GW_AUDIT_STMTS_MAX statements already; more statements,
 * records or parameters than an entry holds, a field or parameter too long, an entry over
 * GW_AUDIT_SPOOL_ENTRY_MAX) or GW_ENOMEM. */
int gw_audit_spool_add(struct gw_audit_spool *sp, const struct gw_audit_left *e) GW_MUST_CHECK;
size_t gw_audit_spool_count(const struct gw_audit_spool *sp);
/* Entry i (< count) of a spool read by gw_audit_spool_decode or gw_audit_spool_load; valid until
 * the spool is freed. NULL for a spool being written (gw_audit_spool_new). */
const struct gw_audit_left *gw_audit_spool_entry(const struct gw_audit_spool *sp, size_t i);

/* The file's bytes: header, entries and the MAC under keys->key[0] (keys->n >= 1). *out is
 * gw_malloc'd (the caller frees it with gw_free_wipe(*out, *len)). Returns 0, GW_EINVAL (bad
 * chain id), GW_ECRYPTO or GW_ENOMEM. */
int gw_audit_spool_encode(const struct gw_audit_spool *sp, struct gw_crypto *cx,
                          const struct gw_audit_mac_keys *keys, const char *chain, uint8_t **out,
                          size_t *len) GW_MUST_CHECK;
/* Verifies buf (its MAC under one of keys, then its chain: chain) and parses every entry. Returns
 * 0 and *out (the caller frees it), or GW_EDATALOSS (the MAC does not verify, another chain, a
 * malformed file), GW_ENOMEM or GW_ECRYPTO (no random bytes: gw_audit_spool_new), with *why
 * saying which (a constant, never the contents) and
 * *out NULL: nothing of a refused file is handed out. */
int gw_audit_spool_decode(const uint8_t *buf, size_t len, struct gw_crypto *cx,
                          const struct gw_audit_mac_keys *keys, const char *chain,
                          struct gw_audit_spool **out, const char **why) GW_MUST_CHECK;

/* Writes the spool to path: a file path.tmp made new (mode 0600), written, fsynced and renamed
 * over path; the caller then fsyncs the directory (gw_file_sync_dir), whose failure leaves the
 * file in place. Refuses a file over max bytes (GW_ETOOBIG: the next start would refuse it).
 * Returns 0 once path is the new file, or an error with err holding "<path>: <reason>" and path
 * as it was. */
int gw_audit_spool_save(const struct gw_audit_spool *sp, const char *path, size_t max,
                        struct gw_crypto *cx, const struct gw_audit_mac_keys *keys,
                        const char *chain, char *err, size_t errsz) GW_MUST_CHECK;
/* Reads path (at most max bytes) and decodes it. Returns 0 and *out; GW_ENOTFOUND when there is
 * no file; GW_ETOOBIG (larger than max), GW_EIO (unreadable, not a regular file, group or others
 * may write it) or gw_audit_spool_decode's errors, with err holding the reason. */
int gw_audit_spool_load(const char *path, size_t max, struct gw_crypto *cx,
                        const struct gw_audit_mac_keys *keys, const char *chain,
                        struct gw_audit_spool **out, char *err, size_t errsz) GW_MUST_CHECK;

/* Moves a file that failed its check aside, never over another: to "<path>.rejected.<now>", or
 * "<path>.rejected.<now>.<k>" (k = 1, 2, ...) when that name is taken (renameat2
 * RENAME_NOREPLACE); then removes the oldest of the files so named (by their time, then k) beyond
 * the newest keep, the one just moved never among them. aside gets the new name. Returns 0, or
 * GW_EIO with err holding "<path>: <reason>" (the file not moved). Removal is best effort: a file
 * that cannot be removed stays, and only the first 64 so named that the directory lists count. */
int gw_audit_spool_reject(const char *path, long long now, int keep, char *aside, size_t asidesz,
                          char *err, size_t errsz) GW_MUST_CHECK;

#endif
