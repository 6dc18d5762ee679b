/* store_outbox_admin.h: waygatectl's statements on the outbox (sql/012_outbox.sql) on its blocking
 * admin connection: the depth and its parts, the parked deliveries, and the retry of one or of
 * many. For the
 * CLI only, never the daemon. Nothing here is PII: ids, counts, times, the backend's reasons. */
#ifndef GW_STORE_OUTBOX_ADMIN_H
#define GW_STORE_OUTBOX_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct gw_admin;

/* The outbox as a whole: every delivery, then by state (parked, of which `behind` are parked
 * behind an earlier parked delivery of their waybill (sql/044); leased now; waiting for a later
 * retry; ready to be claimed), the age of the oldest unparked one in milliseconds (0 when none)
 * and its enqueue time (UTC, YYYY-MM-DDTHH:MM:SSZ; "" when none), the most attempts of one;
 * `held`: unparked ones whose last attempt was refused while the forwarder's breaker was open
 * (last_error "breaker open: ...", forward_int.h): sent again, not parked, until one is accepted.
 */
struct gw_admin_outbox_status {
    long long depth, parked, behind, leased, waiting, ready, oldest_ms, max_attempts, held;
    char oldest_at[24];
};

/* Returns 0 or GW_EINTERNAL (message in errbuf). */
int gw_admin_outbox_status(struct gw_admin *a, struct gw_admin_outbox_status *out, char *errbuf,
                           size_t errlen) GW_MUST_CHECK;

/* One parked delivery; the strings live until the callback returns. */
struct gw_admin_outbox_parked {
    long long id;
    const char *delivery_id, *kind;  /* kind: "waybill" or "scan" */
    const char *record_id, *scan_id; /* scan_id "" for a waybill */
    long long attempts;
    const char *enqueued_at, *parked_at; /* UTC, YYYY-MM-DDTHH:MM:SSZ */
    const char *reason;
};
typedef void (*gw_admin_outbox_parked_cb)(void *arg, const struct gw_admin_outbox_parked *p);

/* Calls cb for each parked delivery, oldest first, at most limit. Returns 0 or GW_EINTERNAL. */
int gw_admin_outbox_parked(struct gw_admin *a, long limit, gw_admin_outbox_parked_cb cb, void *arg,
                           char *errbuf, size_t errlen) GW_MUST_CHECK;

/* What a retry found: the delivery's outbox id; the outbox id of the parked delivery it waits
 * behind (0 when parked on its own or not parked); the deliveries parked behind it, made ready
 * with it. */
struct gw_admin_outbox_retried {
    long long id, behind, followers;
};

/* Makes the parked delivery `id` (its outbox id in decimal, or its delivery id, a UUID) ready
 * again at once: unparked, reason cleared, no lease, no wait (attempts are kept), and with it the
 * deliveries of its waybill parked behind it (sql/044), which follow it in order. Returns 0 with
 * *out filled; GW_ENOTFOUND (no such delivery), GW_EPRECOND (not parked, or parked behind the
 * delivery out->behind, to be retried instead: nothing changed), GW_EINVAL (id is neither form),
 * GW_EINTERNAL. */
int gw_admin_outbox_retry(struct gw_admin *a, const char *id, struct gw_admin_outbox_retried *out,
                          char *errbuf, size_t errlen) GW_MUST_CHECK;

/* What a retry of many found: how many parked on their own were made ready (outbox ids first to
 * last), how many parked behind them came with them, and how many parked on their own and
 * matching were left for a later run (past the limit). */
struct gw_admin_outbox_retried_all {
    long long retried, first, last, followers, left;
};

/* The most deliveries parked on their own that one gw_admin_outbox_retry_all takes: each takes a
 * lock of its waybill (sql/044's trigger) until the commit, in PostgreSQL's shared lock table. */
#define GW_ADMIN_OUTBOX_RETRY_MAX 1000

/* Makes ready again, as gw_admin_outbox_retry does each, the oldest `limit` (1 to
 * GW_ADMIN_OUTBOX_RETRY_MAX) deliveries parked on their own whose reason starts with `prefix`
 * (NULL: any reason), with the deliveries parked behind them, in the caller's transaction.
 * Returns 0 with *out filled (retried 0 when none matched), GW_EINVAL (limit out of range),
 * GW_EINTERNAL. */
int gw_admin_outbox_retry_all(struct gw_admin *a, const char *prefix, long limit,
                              struct gw_admin_outbox_retried_all *out, char *errbuf,
                              size_t errlen) GW_MUST_CHECK;

#endif
