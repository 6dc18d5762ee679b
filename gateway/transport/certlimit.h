/* certlimit.h: authenticated connections per client certificate (its SHA-256 fingerprint), so
 * that one certificate, stolen or misbehaving, cannot hold every connection the gateway takes.
 * Pure: no sockets, no libevent, no logging.
 *
 * A connection whose certificate was counted with gw_certlimit_take holds one count until it
 * closes; the caller releases it exactly once with the same fingerprint. A fingerprint's entry
 * exists exactly while its count is above zero, so the table never holds more entries than
 * there are counted connections. */
#ifndef GW_CERTLIMIT_H
#define GW_CERTLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "peer.h"

struct gw_certlimit;

enum gw_certlimit_verdict {
    GW_CERTLIMIT_OK,    /* counted */
    GW_CERTLIMIT_FULL,  /* the certificate holds max_per_cert connections already: not counted */
    GW_CERTLIMIT_NOMEM, /* not counted */
};

/* Returns NULL on out of memory. */
struct gw_certlimit *gw_certlimit_new(uint32_t max_per_cert);
void gw_certlimit_free(struct gw_certlimit *cl); /* NULL-safe */

enum gw_certlimit_verdict gw_certlimit_take(struct gw_certlimit *cl,
                                            const uint8_t fpr[GW_PEER_FPR_LEN]);
/* A counted connection of fpr closed. */
void gw_certlimit_release(struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN]);

uint32_t gw_certlimit_max(const struct gw_certlimit *cl);
/* Connections counted for fpr, and fingerprints in the table (for tests and metrics). */
uint32_t gw_certlimit_count(const struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN]);
size_t gw_certlimit_entries(const struct gw_certlimit *cl);

#endif
