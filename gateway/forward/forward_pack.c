/* forward_pack.c: one delivery as the backend receives it: the sealed waybill opened, rendered as
 * the policy's backend role sees it (the same code as WaybillQuery/Get, api_render.h), and the
 * Delivery message packed. Also the backoff, the reason sanitiser, the matching of results to
 * deliveries and the breaker's count the engine uses.
 * Invariant: clear values exist only in this file's arena, which gw_arena_free wipes before
 * gw_fwd_pack returns; what leaves is the packed view (tokens, masked and granted values). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "waygate/v1/backend.pb-c.h"

#include "alloc.h"
#include "api_render.h"
#include "app.h"
#include "forward_int.h"
#include "identity.h"
#include "policy.h"
#include "scan.h"
#include "seal.h"
#include "text.h"
#include "wirecheck.h"

/* An opened record and its rendering stay far below this. */
#define FWD_ARENA_CAP (256u * 1024u)

/* May the backend role see this record at all? Its [levels] bound, over every branch. */
static bool backend_may_see(const struct gw_policy *pol, const struct gw_store_row *row)
{
    struct gw_principal p;
    struct gw_policy_record rec = {.origin_branch = row->w.origin_branch,
                                   .dest_branch = row->dest_branch,
                                   .custody_branch = row->custody_branch,
                                   .security_level = row->w.security_level};

    memset(&p, 0, sizeof(p));
    snprintf(p.name, sizeof(p.name), "forwarder");
    snprintf(p.role, sizeof(p.role), "%s", GW_FWD_ROLE);
    p.authn = GW_AUTHN_CERT;
    return gw_policy_in_bulk_scope(pol, &p, &rec);
}

static int pack(const Waygate__V1__Delivery *d, uint8_t **out, size_t *outlen)
{
    size_t n = waygate__v1__delivery__get_packed_size(d);
    uint8_t *buf = malloc(n > 0 ? n : 1);

    if (buf == NULL)
        return GW_ENOMEM;
    *outlen = waygate__v1__delivery__pack(d, buf);
    *out = buf;
    return 0;
}

int gw_fwd_pack(struct gw_app *app, const struct gw_policy *pol, const struct gw_outbox_item *it,
                uint8_t **out, size_t *outlen)
{
    Waygate__V1__Delivery d = WAYGATE__V1__DELIVERY__INIT;
    Waygate__V1__ScanRecord s = WAYGATE__V1__SCAN_RECORD__INIT;
    Waygate__V1__WaybillView v = WAYGATE__V1__WAYBILL_VIEW__INIT;
    struct gw_str clear[GW_COL_COUNT];
    struct gw_arena *a = gw_arena_new(FWD_ARENA_CAP);
    int bad = GW_SEAL_PART_NONE, rc;

    if (a == NULL)
        return GW_ENOMEM;
    /* Authenticate every record, even one the backend will not see: a tampered record is never
     * delivered and is an incident either way. */
    rc = gw_unseal_waybill(app->crypto, app->keys, &it->row->w, a, clear, &bad);
    if (rc == 0 && backend_may_see(pol, it->row)) {
        rc = gw_api_render_role_in(app, pol, GW_FWD_ROLE, a, &it->row->w, clear, &v);
        v.status = (char *)gw_scan_status(it->row->last_event);
        d.waybill = &v;
    }
    if (rc == 0) {
        d.delivery_id = (char *)it->delivery_id;
        d.record_id = (char *)it->record_id;
        d.enqueued_at_us = it->enqueued_at_us;
        d.kind = it->kind == GW_OUTBOX_SCAN
                     ? WAYGATE__V1__DELIVERY_KIND__DELIVERY_KIND_SCAN_EVENT
                     : WAYGATE__V1__DELIVERY_KIND__DELIVERY_KIND_WAYBILL_ACCEPTED;
        if (it->kind == GW_OUTBOX_SCAN) {
            s.id = (char *)it->scan_id;
            s.event = (Waygate__V1__ScanEvent)it->event;
            s.event_time = it->event_time;
            s.branch = (char *)it->branch;
            d.scan = &s;
        }
        rc = pack(&d, out, outlen);
    }
    gw_arena_free(a);
    return rc;
}

size_t gw_fwd_put_delivery(uint8_t *out, const uint8_t *pb, size_t len)
{
    size_t o = 0;

    out[o++] = 0x0a; /* field 1, wire type 2 */
    for (size_t v = len;; v >>= 7) {
        out[o++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        if (v <= 0x7f)
            break;
    }
    memcpy(out + o, pb, len);
    return o + len;
}

uint32_t gw_fwd_backoff(uint32_t min_ms, uint32_t max_ms, int32_t attempts, uint32_t r)
{
    uint64_t d = min_ms > 0 ? min_ms : 1;
    int32_t k = attempts > 1 ? attempts - 1 : 0;

    while (k-- > 0 && d < max_ms)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    /* uniform over [d/2, d]: gateways that failed together do not retry together */
    return (uint32_t)(d - d / 2 + (d / 2 > 0 ? r % (d / 2 + 1) : 0));
}

const char *gw_fwd_response_check(const uint8_t *resp, size_t len, size_t m)
{
    struct gw_wire_measure wm;
    struct gw_fault f;
    size_t results = 0, bound = len + (m + 1) * GW_FWD_RESULT_UNPACKED;

    if (gw_wire_count_max(resp, len, 1, m, &results) != 0)
        return GW_FWD_MALFORMED;
    if (results > m)
        return GW_FWD_MORE_RESULTS;
    if (gw_wire_measure_max(&waygate__v1__deliver_response__descriptor, resp, len, bound, &wm,
                            &f) != 0)
        return f.rule == GW_RULE_UTF8 || f.rule == GW_RULE_NUL ? GW_FWD_MALFORMED
                   ": a string that is not UTF-8 or holds a NUL"
                                                               : GW_FWD_MALFORMED;
    if (wm.unpacked > bound)
        return GW_FWD_MALFORMED ": more to unpack than its results hold (unknown fields)";
    return NULL;
}

struct result_key {
    const char *id;
    size_t i;
};

static int result_key_cmp(const void *a, const void *b)
{
    return strcmp(((const struct result_key *)a)->id, ((const struct result_key *)b)->id);
}

/* A scan of every delivery for each result cost results x deliveries: a response at the size cap
 * (65536 + batch x 1024 bytes) holds ~545 000 empty results, which at batch 1000 held the loop
 * for seconds. At most one result per delivery, each looked up in the sorted ids. */
int gw_fwd_match_results(const struct Waygate__V1__DeliverResponse *r, const char *const *ids,
                         size_t n, const struct Waygate__V1__DeliveryResult **res)
{
    struct result_key *keys;

    for (size_t i = 0; i < n; i++)
        res[i] = NULL;
    if (r->n_results > n)
        return GW_EPROTO;
    if (n == 0 || r->n_results == 0)
        return 0;
    keys = malloc(n * sizeof(*keys));
    if (keys == NULL)
        return GW_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        keys[i].id = ids[i];
        keys[i].i = i;
    }
    qsort(keys, n, sizeof(*keys), result_key_cmp);
    for (size_t k = 0; k < r->n_results; k++) {
        struct result_key want = {.id = r->results[k]->delivery_id};
        const struct result_key *hit;

        if (want.id == NULL)
            continue;
        hit = bsearch(&want, keys, n, sizeof(*keys), result_key_cmp);
        if (hit != NULL && res[hit->i] == NULL)
            res[hit->i] = r->results[k];
    }
    free(keys);
    return 0;
}

int64_t gw_fwd_call_room_ms(int64_t lease_end_ms, int64_t now_ms, uint32_t deadline_ms)
{
    int64_t room;

    if (lease_end_ms == INT64_MAX)
        return deadline_ms;
    room = lease_end_ms - GW_FWD_LEASE_MARGIN_MS - now_ms;
    if (room < GW_FWD_CALL_MIN_MS)
        return 0;
    return room < (int64_t)deadline_ms ? room : (int64_t)deadline_ms;
}

/* Copies prefix, then reason as printable ASCII, into out; with redact, each run of digits
 * becomes one '#'. */
static char *reason_copy(char *out, size_t outlen, const char *prefix, const char *reason,
                         bool redact)
{
    const char *src = reason;
    size_t o = 0;

    for (const char *p = prefix; p != NULL && *p && o + 1 < outlen; p++)
        out[o++] = *p;
    while (src != NULL && *src && o + 1 < outlen) {
        if (redact && gw_ascii_digit(*src)) {
            out[o++] = '#';
            while (gw_ascii_digit(*src))
                src++;
            continue;
        }
        out[o++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
        src++;
    }
    if (outlen > 0)
        out[o] = '\0';
    return out;
}

char *gw_fwd_reason(char *out, size_t outlen, const char *prefix, const char *reason)
{
    return reason_copy(out, outlen, prefix, reason, false);
}

char *gw_fwd_backend_reason(char *out, size_t outlen, const char *prefix, const char *text)
{
    return reason_copy(out, outlen, prefix, text, true);
}

bool gw_fwd_breaker_accepted(struct gw_fwd_breaker *br)
{
    bool was = br->open;

    br->refusals = 0;
    br->open = false;
    return was;
}

bool gw_fwd_breaker_refused(struct gw_fwd_breaker *br)
{
    if (br->refusals < UINT32_MAX)
        br->refusals++;
    if (br->after > 0 && br->refusals >= br->after)
        br->open = true;
    return !br->open;
}
