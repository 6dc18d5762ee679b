/* forward.h: the outbox forwarder. Sends every delivery of the transactional outbox (waybills
 * accepted, scan events recorded; sql/012_outbox.sql) to the carrier backend through
 * CarrierBackend.Deliver (proto/waygate/v1/backend.proto), at least once, in order per waybill.
 *
 * It claims ready deliveries under a lease (store/outbox.h), renders each waybill as the policy's
 * "backend" role sees it (the same rendering as WaybillQuery/Get: api_render.h), packs batches of
 * [forward] batch deliveries, keeps at most [forward] inflight Deliver calls open (gclient.h), and
 * settles every delivery by the backend's answer:
 *   ACCEPTED                       -> acknowledged (deleted from the outbox: one delete at a
 *                                      time carries every delivery accepted since the last, and
 *                                      the call's slot is free at the answer, not at the delete);
 *   REJECTED, or INVALID_ARGUMENT   -> parked with the backend's reason, plus an incident
 *   of a call carrying it alone        "delivery_parked"; the others flow on; but after
 *                                      [forward] breaker_after of them in a row, none accepted
 *                                      between, the breaker opens (forward_int.h): one incident
 *                                      "forward_breaker_open", and refused ones are sent again
 *                                      later, paced as a failing backend, until one is accepted;
 *   RETRY, no result, any other     -> sent again later, after an exponential backoff with jitter
 *   whole-call failure                 ([forward] backoff_min_ms .. backoff_max_ms), forever;
 *   whole-call INVALID_ARGUMENT     -> the batch is sent again one delivery per call.
 * A delivery is deleted only after the backend accepted it; anything the forwarder does not learn
 * (a crash, a lost acknowledgement) ends with the lease and the delivery is sent again: the
 * backend deduplicates on delivery_id. It wakes on the outbox's NOTIFY and polls every
 * [forward] poll_ms. A waybill this gateway accepted is sent at once from memory, without a
 * claim, under the lease its insert took ([forward] fast, fast_max; store.h gw_store_fast_hook);
 * whatever that path does not carry (no room, a failure, a crash) the claim sends. Nothing it logs,
 * records or sends holds a clear value the backend view does not grant (a delivery for a record
 * above the backend's security level carries no waybill). */
#ifndef GW_FORWARD_H
#define GW_FORWARD_H

#include <stdint.h>

#include "err.h"

struct gw_tls_expiry;

struct gw_app;
struct gw_forward;
struct gw_policy;

/* Creates the forwarder for app's [forward] configuration (endpoint set) rendering under policy
 * (referenced) and starts it. owner: this gateway's lease owner name (unique among the gateways
 * sharing the database). NULL with a reason in err (no secret in it). */
struct gw_forward *gw_forward_new(struct gw_app *app, const struct gw_policy *policy,
                                  const char *owner, char *err, size_t errlen);

/* The policy reloaded: later renderings use it (referenced; the old one is released). */
void gw_forward_set_policy(struct gw_forward *f, const struct gw_policy *policy);

/* [forward] cert, key, ca and crl read again (gw_gclient_reload_tls): 0, or an error with the
 * reason in err (the files in force stay). */
int gw_forward_reload_tls(struct gw_forward *f, char *err, size_t errlen);

/* The client certificate's and [forward] crl's remaining time (gw_gclient_tls_expiry). */
void gw_forward_tls_expiry(const struct gw_forward *f, struct gw_tls_expiry *out);

/* Shutdown: claims nothing more; cb runs once from the event loop when the Deliver calls in
 * flight and their settlements are done (or at once when none is). */
typedef void (*gw_forward_drained_cb)(void *arg);
void gw_forward_drain(struct gw_forward *f, gw_forward_drained_cb cb, void *arg);

/* Stops everything (calls in flight are cancelled: their leases run out and another claim sends
 * them again) and frees. NULL-safe. */
void gw_forward_free(struct gw_forward *f);

/* Counters, for logs and tests. */
struct gw_forward_stats {
    uint64_t sent;          /* deliveries sent (each attempt) */
    uint64_t acked;         /* acknowledged by the backend and deleted */
    uint64_t later;         /* put back for a later attempt */
    uint64_t parked;        /* refused for good */
    uint64_t claimed;       /* deliveries claimed from the outbox (each claim of one) */
    uint64_t fast_sent;     /* of sent: deliveries sent by the fast path (no claim) */
    uint64_t fast_acked;    /* of acked: deliveries the fast path sent and the backend accepted */
    uint64_t fast_dropped;  /* fast deliveries left to their lease and a later claim */
    uint64_t pauses;        /* pauses of the claims while the backend failed (forward.c) */
    uint64_t breaker_opens; /* times the breaker opened (forward_int.h: refused everything) */
    uint32_t inflight;      /* Deliver calls open now */
    uint32_t fast_queued;   /* fast deliveries waiting in memory now */
    uint32_t ack_pending;   /* accepted by the backend, their delete from the outbox not done yet */
    uint32_t paused;       /* 1 while the backend fails: claims paused, one probe batch at a time */
    uint32_t breaker_open; /* 1 while the breaker is open: refused deliveries go back, unparked */
    uint32_t breaker_refusals; /* permanent refusals in a row now, none accepted since */
};
void gw_forward_stats(const struct gw_forward *f, struct gw_forward_stats *out);

#endif
