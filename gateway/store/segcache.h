/* segcache.h: the waybill-number segments issued to branches (Art. 18), cached in memory so that
 * a submit checks its number without a database round trip, and so that waybill numbers never
 * travel to PostgreSQL in clear. A number not found in the cache triggers one reload (shared by
 * every check waiting at that moment) only when the last load is older than the refresh interval;
 * within it the miss is answered from the cache (refused), even while the database is away, and a
 * caller sending bad numbers cannot drive a reload per number. A segment issued while the gateway
 * runs is seen at its first use after at most one interval. */
#ifndef GW_SEGCACHE_H
#define GW_SEGCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct gw_store;
struct gw_store_segment;
struct gw_segcache;
struct gw_segcache_req;

/* err: 0 (found tells), GW_EUNAVAIL or GW_EINTERNAL (the segments could not be read). */
typedef void (*gw_segcache_cb)(void *arg, int err, bool found);

/* A cache over the store's segment table (gw_store_load_segments). */
/* refresh_ms: the shortest time between two loads started by a miss (config segment_refresh_ms). */
struct gw_segcache *gw_segcache_new(struct gw_store *store, uint32_t refresh_ms);

/* Where a cache loads its segments from and what time it is: the store and the monotonic clock
 * in production, a test's own in unit tests. load starts one load and returns 0 with a handle
 * for cancel (the source then calls gw_segcache_loaded exactly once, never from inside load,
 * unless cancelled first), or a negative error. now_ms: a monotonic clock in milliseconds. */
struct gw_segcache_source {
    int (*load)(void *ctx, struct gw_segcache *c, void **handle);
    void (*cancel)(void *handle);
    uint64_t (*now_ms)(void *ctx);
    void *ctx;
};
struct gw_segcache *gw_segcache_new_source(const struct gw_segcache_source *src,
                                           uint32_t refresh_ms);
/* A load's outcome: err 0 and seg[0..n) (copied), or an error that every waiting check gets. */
void gw_segcache_loaded(struct gw_segcache *c, int err, const struct gw_store_segment *seg,
                        size_t n);
/* Drops waiting checks without callbacks; NULL-safe. */
void gw_segcache_free(struct gw_segcache *c);

/* Is (prefix, numeric) in a segment issued to branch? Returns 1 or 0 when the cache answers at
 * once (cb not called); GW_OK_PENDING when a reload is under way (cb runs later; *out, which may
 * be NULL, receives a handle for gw_segcache_cancel); or a negative error (cb not called). */
#define GW_OK_PENDING 2
int gw_segcache_check(struct gw_segcache *c, const char *branch, const char *prefix,
                      int64_t numeric, gw_segcache_cb cb, void *arg,
                      struct gw_segcache_req **out) GW_MUST_CHECK;

/* The callback of a pending check will not run. NULL-safe. */
void gw_segcache_cancel(struct gw_segcache_req *req);

#endif
