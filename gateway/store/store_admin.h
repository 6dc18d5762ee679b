/* store_admin.h: the administrative statements of waygatectl on one blocking libpq connection,
 * as the database's admin role (sql/003_roles.sql): waybill-number segments, the KEK versions
 * of the data keys and their re-wrapping, the suspicious-customer register. For the CLI only,
 * never the daemon (its loop must not block). Messages in errbuf are one line and never hold a
 * record's field value (no statement here carries one). */
#ifndef GW_STORE_ADMIN_H
#define GW_STORE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct gw_admin;

/* Connects (application_name waygatectl). Returns 0 with *out (freed with gw_admin_free);
 * GW_EINVAL (no conninfo), GW_EUNAVAIL (cannot connect) or GW_ENOMEM, with a message. */
int gw_admin_connect(const char *conninfo, struct gw_admin **out, char *errbuf,
                     size_t errlen) GW_MUST_CHECK;

/* Closes the connection (rolling back an open transaction). NULL-safe. */
void gw_admin_free(struct gw_admin *a);

/* ---- segments (Art. 18) ---- */

/* Issues [from, to] under prefix to branch, recorded as issued by `by`. Returns 0 with the new
 * segment's id in *id; GW_EEXIST when it overlaps a segment already issued (the database's
 * exclusion constraint: nothing is stored); GW_EINTERNAL when the database refuses otherwise. */
int gw_admin_segment_issue(struct gw_admin *a, const char *branch, const char *prefix,
                           long long from, long long to, const char *by, long long *id,
                           char *errbuf, size_t errlen) GW_MUST_CHECK;

/* One issued segment; the strings live until the callback returns. */
struct gw_admin_segment {
    long long id;
    const char *branch, *prefix, *issued_by;
    const char *issued_at; /* UTC, YYYY-MM-DDTHH:MM:SSZ */
    long long range_from, range_to;
};

typedef void (*gw_admin_segment_cb)(void *arg, const struct gw_admin_segment *seg);

/* Calls cb for each segment (of branch, or all when branch is NULL), by prefix and start.
 * Returns 0 or GW_EINTERNAL. */
int gw_admin_segment_list(struct gw_admin *a, const char *branch, gw_admin_segment_cb cb, void *arg,
                          char *errbuf, size_t errlen) GW_MUST_CHECK;

/* ---- KEK versions and re-wrapping ---- */

struct gw_admin_kek_count {
    int suite; /* the algorithm byte of the wrapped data keys (enum gw_suite) */
    uint32_t version;
    long long records;
};

/* The records per suite and KEK version in use (KEK versions are per suite), ascending: *out
 * (freed with gw_free; NULL when none) and its length *n. Returns 0, GW_ENOMEM or
 * GW_EINTERNAL. */
int gw_admin_kek_counts(struct gw_admin *a, struct gw_admin_kek_count **out, size_t *n,
                        char *errbuf, size_t errlen) GW_MUST_CHECK;

/* The number of records of suite (their wrapped data key's algorithm byte) whose KEK version is
 * `version` (equal) or is not (!equal). Returns 0 or GW_EINTERNAL. */
int gw_admin_count_kek(struct gw_admin *a, int suite, uint32_t version, bool equal, long long *n,
                       char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Retires KEK version `version` of suite in the database (sql/033_kek_retired.sql), before its
 * key is erased from the key file: with the table held against writers, counts the records of
 * suite under that version into *n and, only when there are none, records the retirement, from
 * then on refusing any record stored under it. Idempotent. Returns 0 (*n > 0: nothing recorded),
 * GW_EUNAVAIL when the table could not be locked within 5 s (a long writer: run it again),
 * GW_EPRECOND when the database is not migrated that far, or GW_EINTERNAL. */
int gw_admin_kek_retire(struct gw_admin *a, int suite, uint32_t version, const char *by,
                        long long *n, char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Compares the n check values of a keyring's KEKs (gw_keyring_kek_checks) with the database's
 * (sql/036_kek_version.sql) into *o: with `by`, registers first those it lacks, as brought by
 * `by` (kek_version_meet); with by NULL only compares (a version the table lacks is 'absent').
 * Returns 0, GW_EPRECOND when the database is not migrated that far, GW_ENOMEM or GW_EINTERNAL.
 * Runs in its own statement: outside a transaction, a registration commits at once. */
struct gw_keyring_check;
struct gw_kek_check_outcome;
int gw_admin_kek_check(struct gw_admin *a, const struct gw_keyring_check *c, size_t n,
                       const char *by, struct gw_kek_check_outcome *o, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

/* The newest KEK version of suite the database knows (0: none) into *v. Returns 0, GW_EPRECOND
 * (not migrated that far) or GW_EINTERNAL. */
int gw_admin_kek_newest(struct gw_admin *a, int suite, uint32_t *v, char *errbuf,
                        size_t errlen) GW_MUST_CHECK;

/* Re-wraps one record's data key: from its id, KEK version and wrapped key, writes the key
 * wrapped under the batch's target version to out (GW_CRYPTO_WRAPPED_DEK_LEN bytes). Returns 0,
 * or an error: the record is then counted as failed and left as it is. */
typedef int (*gw_admin_rewrap_fn)(void *arg, const uint8_t id[16], uint32_t kek_version,
                                  const uint8_t *wrapped, size_t wrapped_len, uint8_t *out);

struct gw_admin_rewrap {
    int suite;       /* in: only records of this suite (their wrapped key's algorithm byte) */
    uint32_t target; /* in: the KEK version of suite to re-wrap under */
    struct gw_admin *lease; /* in: leases the wraps (autocommit, not a) */
    long limit;             /* in: records per batch */
    uint8_t cursor[16];     /* in/out: the last id seen in this pass */
    bool have_cursor;       /* in/out: false starts a pass at the lowest id */
    long seen;              /* out: records taken by the last batch (0: the pass is over) */
    long updated;           /* out: records re-wrapped by the last batch (counted once committed) */
    long failed;            /* out: records fn refused in the last batch */
};

/* One batch in one transaction: up to limit records of the suite after the cursor (by id) whose
 * KEK version is not the target, locked (rows locked by another transaction are skipped, for a
 * later pass); then, before any is re-wrapped, one wrap per record taken is leased under the
 * target on b->lease (kek_wrap.h: committed at once; nothing leased when no record was taken;
 * GW_EPRECOND, with the database's words, when the target version has reached its limit of
 * wraps: the batch rolled back, nothing done); each one's key re-wrapped by fn and written back,
 * with the new version, only if its version has not changed meanwhile. Field ciphertexts are not
 * touched. Returns 0, GW_EPRECOND, or GW_EINTERNAL (the batch is rolled back and counts nothing;
 * its lease stays counted). */
int gw_admin_rewrap_batch(struct gw_admin *a, struct gw_admin_rewrap *b, gw_admin_rewrap_fn fn,
                          void *arg, char *errbuf, size_t errlen) GW_MUST_CHECK;

/* ---- the suspicious-customer register (part 12 Art. 7) ---- */

/* One sender phone used by two or more senders; the strings live until the callback returns. */
struct gw_admin_suspect {
    const char *phone_bidx; /* the first hex digits of the phone's blind index */
    long long senders;      /* distinct sender ID numbers seen with it */
    const char *flagged_at; /* UTC, YYYY-MM-DDTHH:MM:SSZ */
    const char *records;    /* the first record id of each sender, comma-separated */
};

typedef void (*gw_admin_suspect_cb)(void *arg, const struct gw_admin_suspect *s);

#define GW_ADMIN_BIDX_HEX_SHOWN 12 /* hex digits of the blind index shown: enough to tell apart */

/* Calls cb for each suspicious phone, newest flag first, at most limit (0: all).
 * Returns 0 or GW_EINTERNAL. */
int gw_admin_suspicious_list(struct gw_admin *a, long limit, gw_admin_suspect_cb cb, void *arg,
                             char *errbuf, size_t errlen) GW_MUST_CHECK;

/* The connection itself, for the CLI's statements kept in other store files (store_routes.c). */
struct pg_conn;
struct pg_conn *gw_admin_conn(struct gw_admin *a);

#endif
