/* retention.h: the retention sweep (Art. 26) inside the gateway: waybills older than the
 * configured retention ([compliance] retention_days, by the later of the pickup day and the day
 * accepted, China Standard Time: sql/039) are destroyed on a timer, in batches of retention_batch.
 * Each batch is one transaction: the rows deleted with their wrapped data keys (crypto-shredding),
 * a destruction record (reason 'retention', the selector, the count) and a retention.destroy audit
 * record, all through the audit writer, so no batch is destroyed without its records. A sweep runs
 * at start and then every retention_sweep_ms; within a sweep, batches follow one another until none
 * is left. A failed batch is logged and retried at the next sweep; while the database or the audit
 * writer (recovering its chain at start) is unavailable, within a second. retention_days 0 keeps
 * everything. */
#ifndef GW_RETENTION_H
#define GW_RETENTION_H

#include <stdint.h>

#include "err.h"

struct event_base;
struct gw_audit;
struct gw_store;
struct gw_retention;

struct gw_retention_config {
    uint32_t days;     /* 0: never destroy */
    uint32_t sweep_ms; /* >= 1 */
    uint32_t batch;    /* 1 .. GW_RETENTION_BATCH_MAX */
};

#define GW_RETENTION_BATCH_MAX 100000 /* the config's bound */

/* Creates the sweep (nothing runs until gw_retention_start). store and audit must outlive it.
 * Returns 0 and *out, GW_EINVAL or GW_ENOMEM. */
int gw_retention_new(struct event_base *base, struct gw_store *store, struct gw_audit *audit,
                     const struct gw_retention_config *cfg,
                     struct gw_retention **out) GW_MUST_CHECK;
/* Schedules the first sweep at the next loop turn. Returns 0 or GW_ENOMEM. */
int gw_retention_start(struct gw_retention *r) GW_MUST_CHECK;

struct gw_retention_stats {
    uint64_t batches;   /* batches destroyed */
    uint64_t destroyed; /* waybills destroyed */
    uint64_t failures;  /* batches that failed */
};
void gw_retention_stats(const struct gw_retention *r, struct gw_retention_stats *out);

/* Cancels what is in flight and frees. NULL-safe. */
void gw_retention_free(struct gw_retention *r);

#endif
