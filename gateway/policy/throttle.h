/* throttle.h: the scraping throttle (issue 7): per principal, the distinct keys (blind indexes of
 * the waybill numbers and phone or ID numbers it looked up; never the values) seen within a
 * sliding window. A key already seen in the window is not counted again; a new key past the
 * limit is refused. One table per gateway process, shared by every stream and connection of a
 * principal, so the limit holds per gateway instance (docs/threat-model.md).
 * Bounded memory: at most max_principals principals and max_keys keys in total. A principal's
 * slot is reused once it has been idle a whole window (and its incident's window has passed);
 * when no slot or no key room is left, the lookup is refused as GW_THROTTLE_FULL (fail closed),
 * which is the table's capacity, not the principal's limit: the caller says so.
 * Cost: finding a principal and a key are hash lookups; a principal's expired keys are dropped
 * by a pass over its keys at most once a second; a full table is searched for a slot to reuse at
 * most once a second.
 * Pure: no I/O, no logging, no clock (the caller passes the time). */
#ifndef GW_THROTTLE_H
#define GW_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GW_THROTTLE_KEY_LEN 16
#define GW_THROTTLE_WHO_MAX 80 /* longest principal identity (with its NUL) */

struct gw_throttle;

/* NULL on allocation failure or max_principals 0. Memory: about 140 bytes per principal slot,
 * allocated at once (zero pages, touched as principals arrive), and at most 40 bytes per key,
 * as keys arrive. */
struct gw_throttle *gw_throttle_new(size_t max_principals, size_t max_keys);
void gw_throttle_free(struct gw_throttle *t);

enum gw_throttle_verdict {
    GW_THROTTLE_OK = 0,   /* counted (or already counted in the window) */
    GW_THROTTLE_OVER = 1, /* refused: the principal's limit of distinct keys in the window */
    GW_THROTTLE_FULL = 2, /* refused: the table has no room for this principal or key */
};

/* Records that principal `who` looked up `key` at now_s (seconds, monotonic). limit: distinct
 * keys per window_s seconds (either 0: nothing allowed, GW_THROTTLE_OVER). On a refusal,
 * *incident (may be NULL) is true for the first of the window: GW_THROTTLE_OVER's per principal,
 * GW_THROTTLE_FULL's per table (the caller records one incident per window, not one per call). */
enum gw_throttle_verdict gw_throttle_check(struct gw_throttle *t, const char *who,
                                           const uint8_t key[GW_THROTTLE_KEY_LEN], uint32_t limit,
                                           uint32_t window_s, uint64_t now_s, bool *incident);

struct gw_throttle_stats {
    size_t principals, max_principals; /* held now, capacity */
    size_t keys, max_keys;
    size_t room;   /* entries the principals' arrays hold room for: at most about 4 x keys, plus
                    * 16 a principal (arrays shrink as entries expire) */
    uint64_t full; /* lookups refused GW_THROTTLE_FULL since start */
};

void gw_throttle_stats(const struct gw_throttle *t, struct gw_throttle_stats *st);

#endif
