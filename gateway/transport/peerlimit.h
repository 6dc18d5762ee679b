/* peerlimit.h: admission of new connections by client address, before any byte of TLS: an
 * accept-rate token bucket and a cap on unauthenticated (pre-authentication) connections per
 * address. An IPv6 address counts by its /64 (what one host is given); IPv4 by the address.
 * Pure: no sockets, no libevent, no logging; the caller passes the time.
 *
 * A connection admitted holds a slot (struct gw_peerlimit_slot) until it authenticates or
 * closes, whichever comes first; the caller releases it exactly once. Entries of addresses
 * with no slot held and a full bucket are dropped lazily; the table never holds more than
 * max_entries addresses (beyond, new addresses are refused until some are dropped). */
#ifndef GW_PEERLIMIT_H
#define GW_PEERLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct sockaddr;
struct gw_peerlimit;
struct gw_peerlimit_slot;

enum gw_peerlimit_verdict {
    GW_PEERLIMIT_OK,
    GW_PEERLIMIT_RATE,    /* the address opens connections faster than its accept rate */
    GW_PEERLIMIT_PREAUTH, /* the address already holds its cap of unauthenticated ones */
    GW_PEERLIMIT_FULL,    /* the table of addresses is full (or out of memory) */
};

/* rate_per_s: accepts per second per address, burst twice that; preauth_max: unauthenticated
 * connections per address. Returns NULL on out of memory. */
struct gw_peerlimit *gw_peerlimit_new(uint32_t rate_per_s, uint32_t preauth_max,
                                      size_t max_entries);
void gw_peerlimit_free(struct gw_peerlimit *pl); /* NULL-safe; every slot must be released */

/* Decides about a connection from sa at now_ms. On GW_PEERLIMIT_OK *slot holds the address's
 * slot (to release with gw_peerlimit_release); otherwise *slot is NULL. An address family other
 * than IPv4/IPv6 (a Unix socket) is admitted with a NULL slot. */
enum gw_peerlimit_verdict gw_peerlimit_admit(struct gw_peerlimit *pl, const struct sockaddr *sa,
                                             uint64_t now_ms, struct gw_peerlimit_slot **slot);

/* The connection holding slot authenticated or closed. NULL-safe. */
void gw_peerlimit_release(struct gw_peerlimit *pl, struct gw_peerlimit_slot *slot);

/* Addresses in the table (for tests). */
size_t gw_peerlimit_entries(const struct gw_peerlimit *pl);

/* Unauthenticated connections held by sa's address (for tests). */
uint32_t gw_peerlimit_preauth(const struct gw_peerlimit *pl, const struct sockaddr *sa);

#endif
