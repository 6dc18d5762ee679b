/* store_scan.h: storing scan events (WaybillIntake.RecordScan), group-committed like submits:
 * events wait in the store and are sent together, one transaction per group, whenever fewer than
 * gw_db_pool_size() scan groups are in flight. Idempotent on (waybill, event, time, device).
 * The caller judges the transition against the latest event it read (domain/scan.h) and says
 * what it saw; the store, holding a per-waybill lock in the transaction, inserts only when that
 * latest event is still the latest (else STALE: read again and judge again), so two devices
 * scanning one waybill at once cannot both pass a rule that only one of them may. A group holds
 * at most one event per waybill (two groups in flight may each hold one: the per-waybill lock
 * orders them, and the one judged against an older latest event is STALE). Nothing here is PII
 * (sql/011_scan.sql). A handle is valid until its callback starts or until gw_store_scan_cancel
 * returns; after cancel the callback never runs. Callbacks never run from inside
 * gw_store_scan_record. */
#ifndef GW_STORE_SCAN_H
#define GW_STORE_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define GW_STORE_SCAN_BRANCH_MAX 31
#define GW_STORE_SCAN_DEVICE_MAX 72

struct gw_store_scan_req;

/* One event to record. Strings NUL-terminated, copied. */
struct gw_store_scan {
    const char *waybill_id; /* the record id as UUID text (gw_store_id_text) */
    int event;              /* enum gw_scan_event, 1..7 */
    int64_t at;             /* event time, Unix seconds */
    const char *branch;     /* 1..31 bytes of [A-Za-z0-9_-] */
    const char *device;     /* the scanning principal, 1..72 bytes */
    int expected;           /* the latest event the caller judged against (0: none) */
    int64_t expected_at;    /* and its time (0: none) */
    bool allowed;           /* the caller's verdict on that transition */
};

enum gw_store_scan_outcome {
    GW_STORE_SCAN_NEW = 1,   /* stored; id is the new event's */
    GW_STORE_SCAN_DUPLICATE, /* the same (waybill, event, time, device) was stored: its id */
    GW_STORE_SCAN_STALE,     /* the latest event is no longer `expected` at `expected_at`: nothing
                              * stored */
    GW_STORE_SCAN_REFUSED,   /* `allowed` was false and it is no duplicate: nothing stored */
    GW_STORE_SCAN_FULL,      /* the branch recorded GW_STORE_SCAN_MAX events of the waybill */
};

/* The most scan events one branch records for one waybill. Each is a delivery to the backend
 * that waits for the waybill's earlier ones, so a device repeating ARRIVED and DEPARTED would
 * otherwise queue behind one waybill as many as it likes, each sent one claim after the last
 * (review). Per branch, not per waybill: a cap per waybill let one branch's device fill it and
 * freeze the waybill, its custody and its status for every other branch (review). A parcel's
 * passage through one branch, returns and failed deliveries included, takes far fewer. */
#define GW_STORE_SCAN_MAX 32

/* err: 0 (outcome set; latest is the waybill's latest event after the transaction), GW_EUNAVAIL
 * (database down, or the outcome unknown: a retry is safe), GW_EINTERNAL (refused by the
 * database, e.g. the waybill is gone), GW_ENOMEM. Valid only during the callback. */
struct gw_store_scan_result {
    int err;
    enum gw_store_scan_outcome outcome;
    char id[37]; /* UUID text; "" unless NEW or DUPLICATE */
    int latest;
};
typedef void (*gw_store_scan_cb)(void *arg, const struct gw_store_scan_result *r);

/* Queues one event. Returns 0 and a handle in *out (may be NULL); GW_EINVAL, GW_EUNAVAIL (no
 * database connection), GW_EQUEUEFULL (too many waiting), GW_ENOMEM: then cb will not run. */
int gw_store_scan_record(struct gw_store *store, const struct gw_store_scan *sc,
                         gw_store_scan_cb cb, void *arg,
                         struct gw_store_scan_req **out) GW_MUST_CHECK;

/* Cancels a recording; its callback never runs. One already sent is committed or not by the
 * server, silently (a retry is idempotent). NULL-safe. */
void gw_store_scan_cancel(struct gw_store_scan_req *req);

/* Counters (for tests): events queued now, groups sent, groups in flight. */
struct gw_store_scan_stats {
    uint64_t queued, groups, inflight;
};
void gw_store_scan_stats(const struct gw_store *store, struct gw_store_scan_stats *out);

#endif
