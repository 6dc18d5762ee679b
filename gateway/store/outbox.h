/* outbox.h: the gateway's side of the transactional outbox (sql/012_outbox.sql): claiming ready
 * deliveries under a lease, acknowledging them, sending them again later, parking the ones the
 * backend refused for good, and waking up when a transaction added some (LISTEN waygate_outbox).
 * The rows themselves are written by the waybill and scan inserts (store_group.c, store_scan.c).
 * Nothing here is PII: a claimed delivery carries ids, its kind, the scan's event, time and branch,
 * and the waybill's sealed record (ciphertexts) for the forwarder to render the backend's view.
 * All calls are asynchronous on the store's pool; a callback never runs from inside the call that
 * queued it. The claim, ack, later and park commit asynchronously (synchronous_commit off for
 * their transaction): a database crash may undo the last of them, so a delivery may be sent again
 * (at least once), never lost. A handle is valid until its callback starts or until
 * gw_outbox_cancel returns. */
#ifndef GW_OUTBOX_H
#define GW_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

enum gw_outbox_kind {
    GW_OUTBOX_WAYBILL = 1, /* a waybill accepted */
    GW_OUTBOX_SCAN = 2,    /* a scan event recorded */
};

/* One claimed delivery. Valid until gw_outbox_claim_free. */
struct gw_outbox_item {
    int64_t id;           /* outbox row id (the order of enqueueing) */
    char delivery_id[37]; /* UUID text: the backend's idempotency key */
    enum gw_outbox_kind kind;
    char record_id[37];     /* the waybill's record id, UUID text */
    int64_t enqueued_at_us; /* commit-time clock of the enqueueing transaction, Unix microseconds */
    int32_t attempts;       /* including this one */
    /* GW_OUTBOX_SCAN only */
    char scan_id[37];
    int event;          /* enum gw_scan_event, 1..7 */
    int64_t event_time; /* Unix seconds */
    char branch[32];
    /* The waybill as stored (sealed; scope '*'), with its status, as gw_store_get gives it. */
    const struct gw_store_row *row;
};

struct gw_outbox_claim;
struct gw_outbox_req;

/* err: 0 (claim may hold zero items), GW_EUNAVAIL, GW_EINTERNAL, GW_ENOMEM. On 0 the callee owns
 * `claim` and frees it with gw_outbox_claim_free (also when it holds no item). */
typedef void (*gw_outbox_claim_cb)(void *arg, int err, struct gw_outbox_claim *claim);

/* Registers the forwarder's frequent statements (the claim, the acknowledgement's delete and the
 * asynchronous commit before them) with the pool's prepared statements (gw_db_prepare): each
 * connection then parses and plans them once, not at every call. Once, before the first claim;
 * a failure costs only speed. Returns 0 or gw_db_prepare's error. */
int gw_outbox_prepare(struct gw_store *store) GW_MUST_CHECK;

/* Claims at most `max` ready deliveries, oldest first: not parked, next_at passed, no live lease,
 * and no earlier delivery of the same waybill still in the outbox; sets lease_owner = owner and
 * lease_until = now + lease_ms and counts an attempt; skips rows another transaction holds. Reads
 * each item's waybill (and scan) in the same round trip. */
int gw_outbox_claim(struct gw_store *store, const char *owner, uint32_t max, uint32_t lease_ms,
                    gw_outbox_claim_cb cb, void *arg, struct gw_outbox_req **out) GW_MUST_CHECK;
size_t gw_outbox_claim_count(const struct gw_outbox_claim *c);
const struct gw_outbox_item *gw_outbox_claim_item(const struct gw_outbox_claim *c, size_t i);
void gw_outbox_claim_free(struct gw_outbox_claim *c);

/* err: 0 or GW_EUNAVAIL / GW_EINTERNAL (nothing changed, or the outcome is unknown: the leases
 * run out and the deliveries are claimed again). */
typedef void (*gw_outbox_done_cb)(void *arg, int err);

/* The most ids one gw_outbox_ack or gw_outbox_later takes. */
#define GW_OUTBOX_IDS_MAX 10000

/* The backend acknowledged these: delete them (only while this owner still holds the lease: one
 * whose lease ran out and that another gateway claimed is that gateway's to finish). */
int gw_outbox_ack(struct gw_store *store, const char *owner, const int64_t *ids, size_t n,
                  gw_outbox_done_cb cb, void *arg, struct gw_outbox_req **out) GW_MUST_CHECK;

/* Not delivered (a transient failure): free the lease, ready again after delay_ms; `error` is a
 * short reason without any value (e.g. "UNAVAILABLE", "deadline"), kept in last_error. */
int gw_outbox_later(struct gw_store *store, const char *owner, const int64_t *ids, size_t n,
                    uint32_t delay_ms, const char *error, gw_outbox_done_cb cb, void *arg,
                    struct gw_outbox_req **out) GW_MUST_CHECK;

/* Refused for good by the backend: park it with `reason` (the backend's words, at most 200 bytes,
 * never a value of the record); it stays until `waygatectl outbox retry`. The later deliveries of
 * the same waybill are parked behind it in the same transaction (sql/044's trigger), and so is
 * one inserted while it is parked; a retry of it brings them back with it. */
int gw_outbox_park(struct gw_store *store, const char *owner, int64_t id, const char *reason,
                   gw_outbox_done_cb cb, void *arg, struct gw_outbox_req **out) GW_MUST_CHECK;

/* Cancels a request; its callback never runs. NULL-safe. */
void gw_outbox_cancel(struct gw_outbox_req *req);

/* Depth: deliveries in the outbox (parked included), parked, and the age of the oldest unparked
 * one in milliseconds (0 when none). */
struct gw_outbox_depth {
    int64_t depth, parked, oldest_ms;
};
typedef void (*gw_outbox_depth_cb)(void *arg, int err, const struct gw_outbox_depth *d);
int gw_outbox_depth(struct gw_store *store, gw_outbox_depth_cb cb, void *arg,
                    struct gw_outbox_req **out) GW_MUST_CHECK;

/* LISTEN waygate_outbox on a connection of its own (libpq, non-blocking, on the store's event
 * base; reconnecting with backoff when it is lost): `wake` runs once per notification batch
 * received, and once after each (re)connection (deliveries may have been added while it was
 * away). NULL on allocation failure. Free stops listening; wake never runs after it. */
struct gw_outbox_listener;
typedef void (*gw_outbox_wake_cb)(void *arg);
struct gw_outbox_listener *gw_outbox_listen(struct gw_store *store, gw_outbox_wake_cb wake,
                                            void *arg);
void gw_outbox_listener_free(struct gw_outbox_listener *l);

#endif
