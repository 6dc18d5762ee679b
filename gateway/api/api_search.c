/* api_search.c: waygate.v1.WaybillQuery/Search: the waybills matching exactly one key (a phone, an
 * ID number or a waybill number through their blind indexes, normalised as at intake; or a pickup
 * day) within the caller's scope (its branch: waybills it accepted or delivers, up to its role's
 * security level; a branch outside the scope is PERMISSION_DENIED), newest first, one page of at
 * most the policy's search_limit_max, each rendered exactly as Get renders it and carrying its
 * continuation. A key the role may not search by (the policy's [search.<role>] keys) is
 * PERMISSION_DENIED naming it, before anything else is done. The key counts against the scraping
 * throttle. A row that fails to authenticate is left out of the page and recorded as an incident
 * (one altered row must not hide the others from the branch, and never shows its data).
 * Bulk threshold (Art. 37): a key that selects more than [compliance] bulk_threshold records the
 * caller may see is refused FAILED_PRECONDITION before any row is sent, pointing to
 * Compliance.RequestBulk; a record outside the scope (above the role's level) counts for nothing,
 * as it does not exist for the caller. The first page reads up to threshold + 1 rows to know,
 * the statement asking the role's level, so that those rows are the caller's to count; a
 * continued page needs no new count: its continuation (MACed by this gateway) proves a first page
 * passed, and keyset paging goes only towards older records, which existed when that page was
 * counted.
 * Searches by phone or ID number are audit records (search.phone, search.id_number; object: the
 * hex of the blind index, never the value; count: the rows sent), committed before the first row
 * leaves (fail closed: a record that cannot be written fails the call UNAVAILABLE, nothing sent).
 * Invariant: the page (clear values included) lives in the call's arena, wiped when the call ends;
 * responses are sent only while the stream is writable. */
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "waygate/v1/query.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_query.h"
#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "clock.h"
#include "config.h"
#include "continuation.h"
#include "crypto.h"
#include "idcard.h"
#include "keyring.h"
#include "log.h"
#include "phone.h"
#include "policy.h"
#include "scan.h"
#include "seal.h"
#include "store.h"
#include "text.h"
#include "waybillno.h"

#define DEFAULT_LIMIT 20

struct search {
    struct gw_call *call;
    struct gw_store_req *req;
    struct gw_audit_req *areq;
    struct gw_store_search q;
    uint32_t page;      /* rows this page may hold (q.limit may be larger: the threshold count) */
    uint32_t threshold; /* more rows than this under one key: bulk, refused */
    const char *field;  /* the key's field name, for refusals */
    struct gw_cont_search cs;
    int64_t issued; /* when the search's first page was answered (continuation.h) */
    char who[GW_API_WHO_MAX];
    char day[11];
    char number[GW_WAYBILLNO_MAX + 1]; /* GW_STORE_KEY_NUMBER: the number asked for */
    size_t number_len;
    Waygate__V1__WaybillView *views; /* the page, in the call's arena */
    size_t n, next;
    char object[2 * GW_STORE_BIDX_LEN + 1]; /* hex of the blind index */
};

static void cancel_cb(void *arg)
{
    struct search *s = arg;

    gw_store_cancel(s->req);
    s->req = NULL;
    gw_audit_cancel(s->areq);
    s->areq = NULL;
}

/* Sends the page while the stream takes it; resumes when it is writable again. */
static void pump(void *arg)
{
    struct search *s = arg;
    int rc;

    while (s->next < s->n) {
        if (!gw_call_writable(s->call)) {
            gw_call_on_writable(s->call, pump, s);
            return;
        }
        rc = gw_call_send(s->call, &s->views[s->next].base);
        if (rc != 0) {
            gw_call_fail(s->call, rc, NULL, GW_RULE_NOT_RENDERED);
            return;
        }
        s->next++;
    }
    gw_call_finish(s->call, GW_GRPC_OK, NULL);
}

/* The key is audited (search.phone, search.id_number) when it is a person's phone or ID number. */
static const char *audited_action(const struct search *s)
{
    return s->q.key == GW_STORE_KEY_PHONE       ? "search.phone"
           : s->q.key == GW_STORE_KEY_ID_NUMBER ? "search.id_number"
                                                : NULL;
}

static void search_record(struct search *s, struct gw_audit_rec *rec)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < GW_STORE_BIDX_LEN; i++) {
        s->object[2 * i] = hex[s->q.bidx[0][i] >> 4];
        s->object[2 * i + 1] = hex[s->q.bidx[0][i] & 15];
    }
    s->object[2 * GW_STORE_BIDX_LEN] = '\0';
    gw_api_record_init(s->call, audited_action(s), rec);
    rec->object = s->object;
}

/* More than the threshold under this key: refused before any row, and recorded when audited. */
static void refuse_bulk(struct search *s)
{
    struct gw_audit_rec rec;
    struct gw_fault f;

    GW_LOG(GW_LOG_WARN, "query", gw_call_log_ctx(s->call),
           "search by %s refused: selects more than %u records (bulk threshold)", s->field,
           (unsigned)s->threshold);
    if (audited_action(s) != NULL) {
        search_record(s, &rec);
        rec.count = 0;
        rec.detail = "bulk threshold";
        (void)gw_api_record_refusal(s->call, &rec); /* (no incident to bound) */
    }
    gw_fault_set(&f, GW_EPRECOND, NULL, s->field, GW_RULE_SEARCH_BULK);
    f.limit = s->threshold;
    gw_call_finish_fault(s->call, &f);
}

/* The page's record committed: the rows may leave. */
static void audited_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct search *s = arg;

    (void)res;
    s->areq = NULL;
    gw_call_set_cancel(s->call, NULL, NULL);
    if (err != 0) {
        gw_api_log_unrecorded(s->call, err, NULL);
        gw_call_fail(s->call, gw_err_queue_full_or(err, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    GW_LOG(GW_LOG_INFO, "query", gw_call_log_ctx(s->call),
           "search by %s: %zu rows (audit seq %lld)", s->field, s->n, (long long)seq);
    pump(s);
}

/* Sends the page, after its audit record when the key is audited. */
static void release(struct search *s)
{
    struct gw_app *app = gw_call_app(s->call);
    struct gw_audit_rec rec;
    int rc;

    if (audited_action(s) == NULL) {
        pump(s);
        return;
    }
    search_record(s, &rec);
    rec.count = (int64_t)s->n;
    rc = app->audit != NULL ? gw_audit_write(app->audit, NULL, 0, &rec, 1, audited_cb, s, &s->areq)
                            : GW_EUNAVAIL;
    if (rc != 0) {
        gw_api_log_unrecorded(s->call, rc, NULL);
        gw_call_fail(s->call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    gw_call_set_cancel(s->call, cancel_cb, s);
}

static void found_cb(void *arg, int err, const struct gw_store_row *rows, size_t n)
{
    struct search *s = arg;
    struct gw_app *app = gw_call_app(s->call);
    struct gw_arena *a = gw_call_arena(s->call);
    struct gw_str clear[GW_COL_COUNT];
    size_t i;
    int rc;

    s->req = NULL;
    gw_call_set_cancel(s->call, NULL, NULL);
    if (err != 0) {
        gw_api_read_failed(s->call, err);
        return;
    }
    if (!s->q.after) { /* counts what the caller may see: the rest does not exist for it */
        size_t seen = 0;
        for (i = 0; i < n; i++)
            seen += gw_api_in_scope(s->call, &rows[i]);
        if (seen > s->threshold) {
            refuse_bulk(s);
            return;
        }
    }
    if (n > 0 &&
        (s->views = gw_arena_alloc(a, (n < s->page ? n : s->page) * sizeof(*s->views))) == NULL) {
        gw_call_fail(s->call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    /* The rows past the page (the first page's count) fill the places of rows left out. */
    for (i = 0; i < n && s->n < s->page; i++) {
        Waygate__V1__WaybillView *v = &s->views[s->n];
        const char *num = s->q.key == GW_STORE_KEY_NUMBER ? s->number : NULL;

        waygate__v1__waybill_view__init(v);
        rc = gw_api_open_row(s->call, &rows[i].w, num, s->number_len, clear);
        if (rc == GW_EDATALOSS || rc == GW_EPRECOND)
            continue; /* incident recorded; the row is left out */
        if (rc == 0 && !gw_api_in_scope(s->call, &rows[i]))
            continue; /* the database's scope and the policy's disagree: show nothing */
        if (rc == 0)
            rc = gw_api_render_view(s->call, &rows[i].w, clear, v);
        v->status = (char *)gw_scan_status(rows[i].last_event);
        if (rc == 0 && (v->continuation = gw_arena_alloc(a, GW_CONT_TEXT_LEN + 1)) == NULL)
            rc = GW_ENOMEM;
        if (rc == 0)
            rc =
                gw_cont_encode(app->crypto, gw_keyring_suite(app->keys),
                               gw_keyring_token_key(app->keys, gw_keyring_suite(app->keys)), &s->cs,
                               s->issued, rows[i].w.accepted_at, rows[i].w.id, v->continuation);
        if (rc != 0) {
            gw_call_fail(s->call, rc, NULL, GW_RULE_NOT_RENDERED);
            return;
        }
        s->n++;
    }
    release(s);
}

/* An ID number as intake normalises it, whatever its type: a 15-digit resident number upgraded
 * to 18 digits, ASCII letters upper-cased. */
static int id_normalize(const char *in, char out[GW_ID_NORM_MAX + 1], size_t *len)
{
    size_t n = strlen(in);

    if (gw_idcard_normalize(GW_ID_RESIDENT_CARD, in, n, out, GW_ID_NORM_MAX + 1, len) == 0)
        return 0;
    if (n > GW_ID_NORM_MAX)
        return GW_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        out[i] = (in[i] >= 'a' && in[i] <= 'z') ? (char)(in[i] - 'a' + 'A') : in[i];
    out[n] = '\0';
    *len = n;
    return 0;
}

/* The policy's name of the request's key; GW_POLICY_SEARCH_NKEYS when none is set. */
static enum gw_policy_search_key policy_key(const Waygate__V1__SearchRequest *in)
{
    switch (in->key_case) {
    case WAYGATE__V1__SEARCH_REQUEST__KEY_PHONE:
        return GW_POLICY_SEARCH_PHONE;
    case WAYGATE__V1__SEARCH_REQUEST__KEY_ID_NUMBER:
        return GW_POLICY_SEARCH_ID_NUMBER;
    case WAYGATE__V1__SEARCH_REQUEST__KEY_WAYBILL_NO:
        return GW_POLICY_SEARCH_WAYBILL_NO;
    case WAYGATE__V1__SEARCH_REQUEST__KEY_PICKUP_DAY:
        return GW_POLICY_SEARCH_PICKUP_DAY;
    default:
        return GW_POLICY_SEARCH_NKEYS;
    }
}

/* True when the caller's role may search by the request's key (or none is set: key_of refuses
 * that), and a person's key set to the sides it may be matched on (s->q.sides). A key it may not
 * search by (not among its [search.<role>] keys, or a person's key whose field its view omits on
 * both sides) is refused naming it, before the value is looked at: a role's search keys are
 * policy, like its view. */
static bool key_allowed(struct search *s, const Waygate__V1__SearchRequest *in)
{
    const struct gw_policy *pol = gw_call_policy(s->call);
    const char *role = gw_call_principal(s->call)->role;
    enum gw_policy_search_key k = policy_key(in);
    unsigned sides;

    if (k == GW_POLICY_SEARCH_NKEYS)
        return true;
    if (!gw_policy_may_search_by(pol, role, k)) {
        gw_call_fail(s->call, GW_EPERM, gw_policy_search_keys[k], GW_RULE_SEARCH_KEY_DENIED);
        return false;
    }
    sides = gw_policy_search_sides(pol, role, k);
    s->q.sides = ((sides & GW_POLICY_SIDE_SENDER) != 0 ? GW_STORE_SIDE_SENDER : 0u) |
                 ((sides & GW_POLICY_SIDE_RECIPIENT) != 0 ? GW_STORE_SIDE_RECIPIENT : 0u);
    return true;
}

/* The key's blind indexes into s->q.bidx, one per suite of the keyring, the configured suite's
 * first (for a day: s->day and a keyed hash of it, so that the throttle counts days like the
 * other keys). Fails the call and returns false on a bad key. */
static bool key_of(struct search *s, const Waygate__V1__SearchRequest *in)
{
    struct gw_app *app = gw_call_app(s->call);
    enum gw_suite suite = gw_keyring_suite(app->keys);
    const uint8_t *ik = gw_keyring_index_key(app->keys, suite);
    char norm[GW_ID_NORM_MAX + 1];
    uint8_t mac[GW_CRYPTO_MAC_LEN];
    enum gw_rule rule = GW_RULE_NONE;
    const char *field = NULL;
    size_t len = 0;
    int rc = 0;

    switch (in->key_case) {
    case WAYGATE__V1__SEARCH_REQUEST__KEY_PHONE:
        field = "phone";
        s->q.key = GW_STORE_KEY_PHONE;
        if (in->phone[0] == '\0')
            rule = GW_RULE_REQUIRED;
        else if (gw_phone_parse(in->phone, strlen(in->phone), norm, &len, NULL, &rule) == 0)
            rc = gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_PHONE, norm, len, s->q.bidx);
        break;
    case WAYGATE__V1__SEARCH_REQUEST__KEY_ID_NUMBER:
        field = "id_number";
        s->q.key = GW_STORE_KEY_ID_NUMBER;
        if (in->id_number[0] == '\0')
            rule = GW_RULE_REQUIRED;
        else if (id_normalize(in->id_number, norm, &len) != 0)
            rule = GW_RULE_TOO_LONG;
        else
            rc = gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_ID_NUMBER, norm, len,
                                     s->q.bidx);
        break;
    case WAYGATE__V1__SEARCH_REQUEST__KEY_WAYBILL_NO:
        field = "waybill_no";
        s->q.key = GW_STORE_KEY_NUMBER;
        if (in->waybill_no[0] == '\0')
            rule = GW_RULE_REQUIRED;
        else if (gw_waybillno_normalize(in->waybill_no, strlen(in->waybill_no), s->number,
                                        &s->number_len, &rule) == 0)
            rc = gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_WAYBILL_NO, s->number,
                                     s->number_len, s->q.bidx);
        break;
    case WAYGATE__V1__SEARCH_REQUEST__KEY_PICKUP_DAY:
        field = "pickup_day";
        s->q.key = GW_STORE_KEY_DAY;
        if (in->pickup_day[0] == '\0') {
            rule = GW_RULE_REQUIRED;
            break;
        }
        if (!gw_text_is_day(in->pickup_day, 2000, 2099)) { /* the years a pickup can have */
            rule = GW_RULE_PICKUP_DAY_FORMAT;
            break;
        }
        memcpy(s->day, in->pickup_day, sizeof(s->day));
        s->q.day = s->day;
        snprintf(norm, sizeof(norm), "search.pickup_day:%s", s->day);
        rc = gw_crypto_hmac(app->crypto, suite, ik, GW_CRYPTO_KEY_LEN, (const uint8_t *)norm,
                            strlen(norm), mac);
        for (size_t k = 0; rc == 0 && k < GW_STORE_BIDX_ALTS; k++)
            memcpy(s->q.bidx[k], mac, sizeof(s->q.bidx[k]));
        break;
    default:
        gw_call_fail(s->call, GW_EINVAL, NULL, GW_RULE_SEARCH_ONE_KEY);
        return false;
    }
    OPENSSL_cleanse(norm, sizeof(norm));
    s->field = field;
    if (rule != GW_RULE_NONE) {
        struct gw_fault f;
        gw_fault_set(&f, GW_EINVAL, NULL, field, rule);
        if (rule == GW_RULE_TOO_LONG)
            f.limit = GW_ID_NORM_MAX;
        gw_call_finish_fault(s->call, &f);
        return false;
    }
    if (rc != 0) {
        gw_call_fail(s->call, rc, NULL, GW_RULE_NONE);
        return false;
    }
    s->cs.key_kind = (int)s->q.key;
    s->cs.sides = s->q.sides; /* a policy reload that changes them ends open pagings */
    s->cs.key = s->q.bidx[0]; /* the configured suite's: a suite switch ends open pagings */
    s->cs.key_len = sizeof(s->q.bidx[0]);
    return true;
}

void gw_api_query_search(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__SearchRequest *in;
    ProtobufCMessage *msg;
    struct gw_app *app = gw_call_app(call);
    const struct gw_principal *p = gw_call_principal(call);
    struct gw_policy_limits lim;
    struct search *s;
    int rc;

    s = gw_api_read_start(call, &waygate__v1__search_request__descriptor, req, len, sizeof(*s),
                          &msg);
    if (s == NULL)
        return;
    in = (Waygate__V1__SearchRequest *)msg;
    s->call = call;
    if (!key_allowed(s, in) || !key_of(s, in))
        return;
    /* Today a scope is one branch: a branch named must be it. */
    if (in->branch[0] != '\0' && strcmp(in->branch, p->branch) != 0) {
        gw_call_fail(call, GW_EPERM, "branch", GW_RULE_BRANCH_OUT_OF_SCOPE);
        return;
    }
    s->q.scope = p->branch;
    s->q.branch = p->branch;
    s->cs.who = gw_api_who(p, s->who);
    s->cs.branch = p->branch;
    /* a level raised since the first page counted the selection ends open pagings */
    s->q.max_level = gw_policy_max_level(gw_call_policy(call), p->role);
    s->cs.level = s->q.max_level;
    /* a first page's time is the search's: every page after it carries it on, so the walk ends
     * GW_CONT_MAX_AGE_S after the bulk threshold was checked */
    s->issued = gw_clock_real_us() / 1000000;
    if (in->continuation[0] != '\0') {
        rc = gw_cont_decode(app->crypto, gw_keyring_suite(app->keys),
                            gw_keyring_token_key(app->keys, gw_keyring_suite(app->keys)), &s->cs,
                            in->continuation, strlen(in->continuation), s->issued, &s->issued,
                            &s->q.after_at, s->q.after_id);
        if (rc == GW_EPRECOND) {
            struct gw_fault f;
            gw_fault_set(&f, GW_EPRECOND, NULL, "continuation", GW_RULE_CONTINUATION_EXPIRED);
            f.limit = GW_CONT_MAX_AGE_S;
            gw_call_finish_fault(call, &f);
            return;
        }
        if (rc != 0) {
            gw_call_fail(call, rc == GW_EINVAL ? GW_EINVAL : rc, "continuation",
                         rc == GW_EINVAL ? GW_RULE_CONTINUATION : GW_RULE_NONE);
            return;
        }
        s->q.after = true;
    }
    gw_policy_limits(gw_call_policy(call), p->role, &lim);
    s->q.limit = in->limit != 0 ? in->limit : DEFAULT_LIMIT;
    if (s->q.limit > lim.search_limit_max)
        s->q.limit = lim.search_limit_max;
    if (s->q.limit > GW_STORE_SEARCH_MAX)
        s->q.limit = GW_STORE_SEARCH_MAX;
    if (s->q.key == GW_STORE_KEY_PHONE || s->q.key == GW_STORE_KEY_ID_NUMBER)
        GW_LOG(GW_LOG_INFO, "query", gw_call_log_ctx(call),
               "search by %s within branch %s (limit %u%s)",
               s->q.key == GW_STORE_KEY_PHONE ? "phone" : "id_number", p->branch,
               (unsigned)s->q.limit, s->q.after ? ", continued" : "");
    if (!gw_api_throttle(call, s->q.bidx[0]))
        return;
    if (s->q.limit == 0 || s->q.max_level < 0) { /* the role may see nothing: an empty page */
        gw_call_finish(call, GW_GRPC_OK, NULL);
        return;
    }
    /* A first page counts the selection up to the threshold + 1 (at most what one read may
     * return, so a threshold configured above it acts as GW_STORE_SEARCH_MAX - 1); the statement
     * leaves out the records above the role's level, so a hidden record neither takes a place
     * among them nor is read. */
    s->page = s->q.limit;
    s->threshold = app->cfg->bulk_threshold;
    if (s->threshold > GW_STORE_SEARCH_MAX - 1)
        s->threshold = GW_STORE_SEARCH_MAX - 1;
    if (!s->q.after && s->q.limit < s->threshold + 1)
        s->q.limit = s->threshold + 1;
    rc = gw_store_search(app->store, &s->q, found_cb, s, &s->req);
    if (rc != 0) {
        gw_api_read_failed(call, rc);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, s);
}
