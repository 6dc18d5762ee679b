/* store_reseal.h: the SQL of `waygatectl keys migrate-suite` (issue 11) on the CLI's blocking
 * connection (store_admin.h), as the admin role: count the records per suite and re-seal them in
 * batches while the gateway serves. A record's suite is the algorithm byte (offset 1) of its
 * dek_wrapped. A batch is one transaction: it takes up to `limit` records of another suite after
 * a cursor (by id), locked FOR UPDATE SKIP LOCKED by waybill_reseal_take (a row the gateway or
 * another batch holds is left for a later pass, never waited for), hands each one to the caller's
 * re-sealing function and writes the result through waybill_reseal (sql/013_suite_migrate.sql),
 * which refuses anything but a complete record of one other suite and changes the row only if its
 * wrapped key is still the one the caller opened. For the CLI only, never the daemon. Messages in
 * errbuf are one line and never hold a field value. */
#ifndef GW_STORE_RESEAL_H
#define GW_STORE_RESEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "record.h"
#include "store_admin.h"

struct gw_arena;

/* The number of records whose suite (algorithm byte) is alg (equal) or is not (!equal).
 * Returns 0 or GW_EINTERNAL. */
int gw_admin_count_suite(struct gw_admin *a, uint8_t alg, bool equal, long long *n, char *errbuf,
                         size_t errlen) GW_MUST_CHECK;

/* Re-seals one stored record (its pointers valid during the call) into *out, allocated from
 * arena (wiped and freed after the record is written). Returns 0, or an error: the record is
 * then counted as failed and left as it is. */
typedef int (*gw_admin_reseal_fn)(void *arg, const struct gw_sealed_waybill *row,
                                  struct gw_arena *arena, struct gw_sealed_waybill *out);

/* Told of a record whose re-sealed blind index another record already holds (the unique index
 * on wb_bidx: the same waybill number stored twice, once under each suite, e.g. a retried submit
 * during the switch); the record is counted as failed and left as it is. */
typedef void (*gw_admin_reseal_conflict_fn)(void *arg, const uint8_t id[16]);

struct gw_admin_reseal {
    uint8_t target;                       /* in: the algorithm byte of the target suite */
    uint32_t kek_version;                 /* in: the target suite's current KEK version */
    struct gw_admin *lease;               /* in: leases the wraps (autocommit, not a) */
    gw_admin_reseal_conflict_fn conflict; /* in: may be NULL; gets fn's arg */
    long limit;                           /* in: records per batch */
    uint8_t cursor[16];                   /* in/out: the last id seen in this pass */
    bool have_cursor;                     /* in/out: false starts a pass at the lowest id */
    long seen;    /* out: records taken by the last batch (0: the pass is over) */
    long updated; /* out: records re-sealed by the last batch (counted once committed) */
    long failed;  /* out: records fn refused in the last batch */
};

/* One batch in one transaction (see above): once its records are taken, and before any is
 * sealed, two wraps per record taken are leased under the target's KEK version on b->lease
 * (kek_wrap.h: committed at once; nothing leased when no record was taken). Returns 0,
 * GW_EPRECOND (that version has reached its limit of wraps: the batch rolled back, nothing done;
 * errbuf says so), or GW_EINTERNAL / GW_ENOMEM (the batch is rolled back and counts nothing; its
 * lease stays counted). */
int gw_admin_reseal_batch(struct gw_admin *a, struct gw_admin_reseal *b, gw_admin_reseal_fn fn,
                          void *arg, char *errbuf, size_t errlen) GW_MUST_CHECK;

#endif
