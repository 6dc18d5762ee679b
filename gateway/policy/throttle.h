/* throttle.h: the scraping throttle (issue 7): per principal, the distinct keys (blind indexes of
 * the waybill numbers and phone or ID numbers it looked up; never the values) seen within a
 * sliding window. A key already seen in the window is not counted again; a new key past the
 * limit is refused. One table per gateway process, shared by every stream and connection of a
 * principal, so the limit holds per gateway instance (docs/threat-model.md).
 * Bounded memory: at most max_principals principals and max_keys keys in total; when a table is
 * full, entries whose window has passed are dropped first, and a lookup that still finds no room
 * is refused (fail closed).
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

/* NULL on allocation failure. */
struct gw_throttle *gw_throttle_new(size_t max_principals, size_t max_keys);
void gw_throttle_free(struct gw_throttle *t);

enum gw_throttle_verdict {
    GW_THROTTLE_OK = 0,   /* counted (or already counted in the window) */
    GW_THROTTLE_OVER = 1, /* refused: the limit of distinct keys in the window is reached */
};

/* Records that principal `who` looked up `key` at now_s (seconds, monotonic). limit: distinct
 * keys per window_s seconds (either 0: nothing allowed). On GW_THROTTLE_OVER, *incident (may be
 * NULL) is true for the first refusal of the window (the caller records one incident per window,
 * not one per call). */
enum gw_throttle_verdict gw_throttle_check(struct gw_throttle *t, const char *who,
                                           const uint8_t key[GW_THROTTLE_KEY_LEN], uint32_t limit,
                                           uint32_t window_s, uint64_t now_s, bool *incident);

/* Principals and keys held now (tests and metrics). */
void gw_throttle_usage(const struct gw_throttle *t, size_t *principals, size_t *keys);

#endif
