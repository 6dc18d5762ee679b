/* certlimit.h: authenticated connections per client certificate (its SHA-256 fingerprint), so
 * that one certificate, stolen or misbehaving, cannot hold every connection the gateway takes,
 * the certificate's budget of request memory in flight (budget.h) and its budget of response
 * memory (h2.h, struct gw_h2_pool), so that its connections together cannot hold the gateway's.
 * No sockets, no logging; libevent only through the response pools' wake-up events (made on
 * the base given to gw_certlimit_new).
 *
 * A connection whose certificate was counted with gw_certlimit_take holds one count until it
 * closes; the caller releases it exactly once with the same fingerprint. A fingerprint's entry
 * exists exactly while its count is above zero, so the table never holds more entries than
 * there are counted connections. The entry's budgets (gw_certlimit_budget,
 * gw_certlimit_response_pool) go with it: the caller releases a connection's count only once
 * nothing that connection charged to them is left (its streams and calls are freed, and with
 * them its waiting streams), so the last release finds them empty. */
#ifndef GW_CERTLIMIT_H
#define GW_CERTLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "peer.h"

struct event_base;
struct gw_budget;
struct gw_certlimit;
struct gw_h2_pool;

enum gw_certlimit_verdict {
    GW_CERTLIMIT_OK,    /* counted */
    GW_CERTLIMIT_FULL,  /* the certificate holds max_per_cert connections already: not counted */
    GW_CERTLIMIT_NOMEM, /* not counted */
};

/* request_memory, response_memory: each certificate's budgets of request memory in flight and
 * of response memory (0: no limit); base: the loop of the response pools' wake-up events (NULL:
 * no response pools, for tests of the counts). Returns NULL on out of memory. */
struct gw_certlimit *gw_certlimit_new(uint32_t max_per_cert, size_t request_memory,
                                      size_t response_memory, struct event_base *base);
void gw_certlimit_free(struct gw_certlimit *cl); /* NULL-safe */

enum gw_certlimit_verdict gw_certlimit_take(struct gw_certlimit *cl,
                                            const uint8_t fpr[GW_PEER_FPR_LEN]);
/* A counted connection of fpr closed, and what it charged to fpr's budget was given back. */
void gw_certlimit_release(struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN]);

/* fpr's budget of request memory in flight, shared by its counted connections, or NULL when
 * none is counted. Valid until the release of its last counted connection. */
struct gw_budget *gw_certlimit_budget(struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN]);
/* For metrics: the most request memory one certificate holds now, the most one ever held
 * (certificates gone included), and each one's limit. */
void gw_certlimit_request_memory(const struct gw_certlimit *cl, size_t *most, size_t *peak,
                                 size_t *limit);

/* fpr's response memory (h2.h), shared by its counted connections' sessions, or NULL when none
 * is counted (or cl has no base). Valid until the release of its last counted connection. */
struct gw_h2_pool *gw_certlimit_response_pool(struct gw_certlimit *cl,
                                              const uint8_t fpr[GW_PEER_FPR_LEN]);
/* For metrics: the most response memory one certificate holds now, the most one ever held
 * (certificates gone included), and each one's limit. */
void gw_certlimit_response_memory(const struct gw_certlimit *cl, size_t *most, size_t *peak,
                                  size_t *limit);

uint32_t gw_certlimit_max(const struct gw_certlimit *cl);
/* Connections counted for fpr, and fingerprints in the table (for tests and metrics). */
uint32_t gw_certlimit_count(const struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN]);
size_t gw_certlimit_entries(const struct gw_certlimit *cl);

#endif
