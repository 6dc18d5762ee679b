/* api_scan.c: waygate.v1.WaybillIntake/RecordScan: a device records a scan event for a stored
 * waybill. Checks, in order: the request (waybill_no, event, event_time not negative nor in the
 * future, branch the caller's own), the waybill read and authenticated (within the caller's scope,
 * NOT_FOUND like a missing number otherwise; for ARRIVED within any branch, since scanning it in
 * is what gives the branch custody, but not above the role's security level), the event time not
 * before its pickup, the transition against its latest event (domain/scan.h); then the store
 * (store_scan.h, group commit) inserts it unless it is a retry, only while that latest event is
 * still the latest (else read and judge again, a bounded number of times). Acknowledged after
 * the commit. A retry of an event whose waybill has left the scope since (a custodian's DEPARTED)
 * is still answered as the duplicate it is: outside the scope, an event with its own time is
 * looked up under every branch's scope, and anything but that very event stored is NOT_FOUND.
 * An arrival at a waybill outside the scope is refused only as a missing number is (NOT_FOUND,
 * word for word) whatever the reason (its pickup time, its transition, contention), and every
 * NOT_FOUND of an arrival counts against the caller's lookup throttle, so that guessing is
 * bounded: what an arrival may reveal is the existence its stored event records. Every arrival
 * also counts, before anything is read, against the caller's arrivals throttle (the role's
 * arrivals_per_window distinct waybills), so that custody is not moved at an unbounded rate by
 * one certificate; its refusal says nothing about the waybill. A probe (the
 * look-up of a retried event outside the scope) counts against the lookup throttle before it
 * reads, and opens nothing. A caller outside
 * the scope when the waybill was read is answered the status of its own event, never the
 * waybill's status now (a retry of an old scan would follow the parcel after it left).
 * Invariant: the record's clear values (opened to authenticate it and to read its pickup time) live
 * only in the call's arena. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "waygate/v1/intake.pb-c.h"

#include "api.h"
#include "api_query.h"
#include "app.h"
#include "policy.h"
#include "scan.h"
#include "seal.h"
#include "store.h"
#include "store_scan.h"
#include "waybillno.h"

#define STALE_MAX 3 /* reads and judgements of one call before it gives up (UNAVAILABLE) */

struct scan {
    struct gw_call *call;
    struct gw_store_req *getreq;
    struct gw_store_scan_req *scanreq;
    char number[GW_WAYBILLNO_MAX + 1];
    size_t number_len;
    uint8_t bidx[GW_SEAL_LOOKUP_N][GW_STORE_BIDX_LEN]; /* one per suite of the keyring */
    int event;
    int64_t asked, now, at;  /* the request's event_time, the receive time, the time recorded */
    struct gw_fault refusal; /* the transition's refusal, answered unless the event is a retry */
    int reads;
    bool probe;   /* outside the scope: only a retry of this very event is answered (OK) */
    bool outside; /* an arrival at a waybill that was outside the caller's scope when read */
};

static void cancel_cb(void *arg)
{
    struct scan *sc = arg;

    gw_store_cancel(sc->getreq);
    sc->getreq = NULL;
    gw_store_scan_cancel(sc->scanreq);
    sc->scanreq = NULL;
}

static void read_waybill(struct scan *sc);

/* NOT_FOUND, exactly as a number that does not exist is answered. An arrival reads the waybill
 * under every branch's scope, so its answers are lookups like Get's: each one counts against the
 * caller's lookup throttle (api_query.h), the answer for a missing number as much as for a
 * refused arrival at a waybill outside the scope, or the throttle itself would tell them apart. */
static void fail_not_found(struct scan *sc)
{
    if (sc->event == GW_SCAN_ARRIVED && !gw_api_throttle(sc->call, sc->bidx[0]))
        return;
    gw_call_fail(sc->call, GW_ENOTFOUND, "waybill_no", GW_RULE_NOT_IN_SCOPE);
}

static void stored_cb(void *arg, const struct gw_store_scan_result *r)
{
    Waygate__V1__RecordScanResponse out = WAYGATE__V1__RECORD_SCAN_RESPONSE__INIT;
    struct scan *sc = arg;
    int rc;

    sc->scanreq = NULL;
    gw_call_set_cancel(sc->call, NULL, NULL);
    if (r->err != 0) {
        gw_call_fail(sc->call, r->err, NULL,
                     r->err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_STORED);
        return;
    }
    switch (r->outcome) {
    case GW_STORE_SCAN_NEW:
    case GW_STORE_SCAN_DUPLICATE:
        if (sc->probe && r->outcome != GW_STORE_SCAN_DUPLICATE)
            break;
        out.id = (char *)r->id;
        /* A caller outside the waybill's scope when it was read (a retry after its custody
         * ended, an arrival at a waybill of another branch) hears the status its own event
         * sets, which it sent, never the waybill's status now: a device re-sending an old scan
         * would otherwise follow a parcel it may not look up, unthrottled and untraced. */
        out.status = (char *)gw_scan_status(sc->probe || sc->outside ? sc->event : r->latest);
        out.duplicate = r->outcome == GW_STORE_SCAN_DUPLICATE;
        rc = gw_call_send(sc->call, &out.base);
        if (rc != 0) {
            gw_call_fail(sc->call, rc, NULL, GW_RULE_NONE);
            return;
        }
        gw_call_finish(sc->call, GW_GRPC_OK, NULL);
        return;
    case GW_STORE_SCAN_REFUSED:
        if (sc->probe || sc->outside)
            break;
        gw_call_finish_fault(sc->call, &sc->refusal);
        return;
    case GW_STORE_SCAN_FULL:
        if (sc->probe || sc->outside)
            break;
        gw_call_fail(sc->call, GW_EPRECOND, "waybill_no", GW_RULE_SCAN_LIMIT);
        return;
    case GW_STORE_SCAN_STALE:
    default:
        if (sc->probe)
            break;
        if (sc->reads >= STALE_MAX) {
            if (sc->outside) /* contention, too, would say that the waybill exists */
                break;
            gw_call_fail(sc->call, GW_EUNAVAIL, "waybill_no", GW_RULE_SCAN_CONTENDED);
            return;
        }
        read_waybill(sc); /* another device's event came first: judge again */
        return;
    }
    /* a probe that found no retry, or a refused arrival outside the scope: exactly like a
     * missing number */
    fail_not_found(sc);
}

/* The waybill's pickup time from its opened fields (0 when not recorded). */
static int64_t pickup_time(const struct gw_str clear[GW_COL_COUNT])
{
    const struct gw_str *v = &clear[GW_COL_PICKUP_TIME];
    char buf[24];

    if (v->n == 0 || v->n >= sizeof(buf))
        return 0;
    memcpy(buf, v->p, v->n);
    buf[v->n] = '\0';
    return strtoll(buf, NULL, 10);
}

/* gw_api_row_visible, except that an arrival (and a probe) is judged as if its branch already held
 * custody: any branch may scan a stored waybill in, within its role's security level. */
static bool row_visible(struct scan *sc, int err, const struct gw_store_row *row,
                        struct gw_str clear[GW_COL_COUNT])
{
    const struct gw_principal *p = gw_call_principal(sc->call);
    struct gw_policy_record rec;
    int rc;

    if (err == GW_ENOTFOUND) {
        fail_not_found(sc);
        return false;
    }
    if ((sc->event != GW_SCAN_ARRIVED && !sc->probe) || err != 0)
        return gw_api_row_visible(sc->call, err, row, sc->number, sc->number_len, clear);
    /* the scope first, on the clear columns, as gw_api_row_visible does: a record outside it is a
     * missing number, readable or not */
    rec = (struct gw_policy_record){.origin_branch = row->w.origin_branch,
                                    .dest_branch = row->dest_branch,
                                    .custody_branch = p->branch,
                                    .security_level = row->w.security_level};
    if (!gw_policy_in_scope(gw_call_policy(sc->call), p, &rec)) {
        fail_not_found(sc);
        return false;
    }
    /* A probe judges nothing and answers only its own stored event, no field of the record: it
     * opens nothing, so a record that cannot be read answers it as any other does, and the
     * answer costs no decryption that a missing number's does not. */
    if (sc->probe) {
        memset(clear, 0, GW_COL_COUNT * sizeof(*clear));
        return true;
    }
    rc = gw_api_open_row(sc->call, &row->w, sc->number, sc->number_len, clear);
    if (rc == GW_EDATALOSS || rc == GW_EPRECOND) {
        gw_api_fail_unreadable(sc->call, rc);
        return false;
    }
    if (rc != 0) {
        gw_call_fail(sc->call, rc, NULL, GW_RULE_NOT_READ);
        return false;
    }
    return true;
}

static void got_cb(void *arg, int err, const struct gw_store_row *row)
{
    struct scan *sc = arg;
    const struct gw_principal *p = gw_call_principal(sc->call);
    struct gw_str clear[GW_COL_COUNT];
    struct gw_store_scan ev;
    struct gw_fault f;
    char idtext[37];
    int rc;

    sc->getreq = NULL;
    gw_call_set_cancel(sc->call, NULL, NULL);
    /* Outside the scope (it may have left the branch since): a retry of an event with its own
     * time may still find that event stored, so look for it before answering NOT_FOUND. */
    if (!sc->probe && sc->event != GW_SCAN_ARRIVED && sc->asked != 0 &&
        (err == GW_ENOTFOUND || (err == 0 && !gw_api_in_scope(sc->call, row)))) {
        /* a lookup under every branch's scope, like an arrival's: it counts against the lookup
         * throttle before any of its work, whatever it then finds (a missing number, another
         * branch's waybill, the caller's own stored event) */
        if (!gw_api_throttle(sc->call, sc->bidx[0]))
            return;
        sc->probe = true;
        read_waybill(sc);
        return;
    }
    if (!row_visible(sc, err, row, clear))
        return;
    /* An arrival may be read outside the scope, but what its refusals say (its pickup time, that
     * it was delivered) is the waybill's data: before it is stored, a caller outside the scope
     * learns nothing that a missing number would not tell it (docs/threat-model.md). Once
     * outside at a read of this call, judged outside for the rest of it. */
    if (sc->event == GW_SCAN_ARRIVED && !gw_api_in_scope(sc->call, row))
        sc->outside = true;
    /* (a probe judges nothing: only the very event, stored, is answered) */
    if (!sc->probe &&
        gw_scan_check_event(sc->event, sc->asked, sc->now, pickup_time(clear), &sc->at, &f) != 0) {
        if (sc->outside)
            fail_not_found(sc);
        else
            gw_call_finish_fault(sc->call, &f);
        return;
    }
    memset(&ev, 0, sizeof(ev));
    gw_store_id_text(row->w.id, idtext);
    ev.waybill_id = idtext;
    ev.event = sc->event;
    ev.at = sc->at;
    ev.branch = p->branch;
    ev.device = p->cert[0] != '\0' ? p->cert : p->name;
    ev.expected = row->last_event;
    ev.expected_at = row->last_event_at;
    ev.allowed = !sc->probe && gw_scan_check_transition(row->last_event, row->last_event_at,
                                                        sc->event, sc->at, &sc->refusal) == 0;
    rc = gw_store_scan_record(gw_call_app(sc->call)->store, &ev, stored_cb, sc, &sc->scanreq);
    if (rc != 0) {
        gw_call_fail(sc->call, rc, NULL,
                     rc == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_STORED);
        return;
    }
    gw_call_set_cancel(sc->call, cancel_cb, sc);
}

/* Reads the waybill: within the caller's scope, or, for an arrival or a probe, within every
 * branch's. */
static void read_waybill(struct scan *sc)
{
    const struct gw_principal *p = gw_call_principal(sc->call);
    const char *scope = sc->event == GW_SCAN_ARRIVED || sc->probe ? "*" : p->branch;
    int rc;

    sc->reads++;
    rc = gw_store_get(gw_call_app(sc->call)->store, scope, sc->bidx,
                      gw_policy_max_level(gw_call_policy(sc->call), p->role), got_cb, sc,
                      &sc->getreq);
    if (rc != 0) {
        gw_api_read_failed(sc->call, rc);
        return;
    }
    gw_call_set_cancel(sc->call, cancel_cb, sc);
}

/* The request's own checks, before anything is read. */
static bool request_ok(struct scan *sc, const Waygate__V1__RecordScanRequest *in)
{
    const struct gw_principal *p = gw_call_principal(sc->call);
    enum gw_rule rule = GW_RULE_NONE;
    struct gw_fault f;

    if (in->waybill_no[0] == '\0') {
        gw_call_fail(sc->call, GW_EINVAL, "waybill_no", GW_RULE_REQUIRED);
        return false;
    }
    if (gw_waybillno_normalize(in->waybill_no, strlen(in->waybill_no), sc->number, &sc->number_len,
                               &rule) != 0) {
        gw_call_fail(sc->call, GW_EINVAL, "waybill_no", rule);
        return false;
    }
    sc->event = (int)in->event;
    sc->asked = in->event_time;
    sc->now = (int64_t)time(NULL);
    if (gw_scan_check_event(sc->event, sc->asked, sc->now, 0, &sc->at, &f) != 0) {
        gw_call_finish_fault(sc->call, &f);
        return false;
    }
    if (in->branch[0] != '\0' && strcmp(in->branch, p->branch) != 0) {
        gw_call_fail(sc->call, GW_EPERM, "branch", GW_RULE_OWN_BRANCH);
        return false;
    }
    return true;
}

void gw_api_intake_record_scan(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct gw_app *app = gw_call_app(call);
    ProtobufCMessage *msg;
    struct scan *sc;
    int rc;

    sc = gw_api_read_start(call, &waygate__v1__record_scan_request__descriptor, req, len,
                           sizeof(*sc), &msg);
    if (sc == NULL)
        return;
    sc->call = call;
    if (!request_ok(sc, (Waygate__V1__RecordScanRequest *)msg))
        return;
    rc = gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_WAYBILL_NO, sc->number, sc->number_len,
                             sc->bidx);
    if (rc != 0) {
        gw_call_fail(call, rc, NULL, GW_RULE_NONE);
        return;
    }
    /* An arrival takes custody of any branch's waybill: its rate is bounded by a count of its
     * own, charged before anything is read, so that its refusal is the same for a missing
     * number, a waybill outside the scope and one within it (a retry: the same key, counted
     * once). Its NOT_FOUND still counts as a lookup too (fail_not_found). */
    if (sc->event == GW_SCAN_ARRIVED && !gw_api_throttle_arrival(call, sc->bidx[0]))
        return;
    read_waybill(sc);
}
