/* api_bulk_run.c: Compliance/RunBulk (Art. 37): runs an approved bulk request once, by its
 * requester, before its approval expires (else FAILED_PRECONDITION and a refused bulk.run record).
 *
 * Export or copy: the selection is frozen at what was approved: the stored selector over the
 * records accepted strictly before the request's second, as its count took them (store_bulk.h),
 * narrowed to the requester's role's security levels (the lower of gw_policy_max_level now and
 * the request's max_level, as its count took them: a run never releases a record above them, so
 * neither its count nor its bulk.run record takes one), counted first; a run that would select more
 * than the approved record_count is refused (FAILED_PRECONDITION and a refused bulk.run record)
 * before anything is released. Then the request is marked executed and its bulk.run record, with
 * that count, committed in one transaction before any row is read (fail closed), and the stream
 * stops with an error rather than release more records than the record counts (the scope may have
 * grown since the count). Then the selected waybills are read a page at a time (by id, within the
 * bulk scope of policy.c), each authenticated, rendered exactly as the requester's role sees it
 * (gw_api_render_view_in: the role's view, never more), packed as a WaybillView, base64-encoded and
 * followed by its watermark tag (watermark.h), sealed to the recipient's X25519 key (xseal.h) in
 * chunks (the key requested and approved with the request, sql/040: a key the caller gives must
 * be that one, else FAILED_PRECONDITION and a refused bulk.run record; a request stored without
 * one runs no export or copy; the claim holds only with the stored key, and only while it is the
 * one the approver's bulk.approve record names: one changed in the database since the approval,
 * or between the read and the claim, is refused FAILED_PRECONDITION, recorded, with a critical
 * bulk_key_changed incident, nothing released) and streamed while the
 * client reads. The last message carries the watermark (export) id and the SHA-256 of the whole
 * output.
 *
 * Destroy: the same frozen selection, within the same levels (a destroy is bounded by its
 * requester's levels exactly as an export: a classified record needs a requester cleared for
 * it), is counted (more than approved: refused), then one transaction marks the request
 * executed, deletes every selected waybill (their wrapped data keys with them: crypto-shredding;
 * bulk_destroy, sql/022, sql/024 and sql/031, deletes only records accepted before the request's
 * second and within the level, and refuses more than approved), writes the destruction record
 * and the bulk.run record, both counting what was deleted, the selector text naming the level;
 * it fails, destroying nothing, when the selection changed since it was counted.
 *
 * A run that ends having left out records its bulk.run record counted (one that fails
 * authentication: an incident) leaves a second bulk.run record, outcome "short", counting the
 * records released.
 *
 * A run that stops after its bulk.run record committed and before its last chunk (the client
 * cancelled or stopped reading, the deadline passed, the gateway drained, a page could not be
 * read, a row was over the recorded count) leaves a second bulk.run record, outcome "stopped":
 * its count is the records the client could have received whole (those in the chunks handed to
 * the call), its detail why; nothing is sent after the stop.
 *
 * Invariants: memory is bounded by one page (a page arena, reset per page, and at most one page
 * of sealed chunks queued; the next page is read only while the stream is writable, so a call
 * waiting for response memory (h2.h) holds no page); clear values live only in the page arena
 * and the chunk buffer, both
 * wiped; every resource is released exactly once (cleanup), on finish and on cancel. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "waygate/v1/compliance.pb-c.h"
#include "waygate/v1/query.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_bulk_int.h"
#include "api_query.h"
#include "api_record.h"
#include "app.h"
#include "config.h"
#include "keyring.h"
#include "log.h"
#include "policy.h"
#include "watermark.h"
#include "xseal.h"

#define PAGE_ROWS 100
#define PAGE_ARENA (4u << 20) /* a page of opened and rendered rows */
#define QUEUE_MAX 64          /* sealed chunks waiting for the client (more than a page makes) */

struct chunk {
    uint8_t *data;
    size_t len;
    uint64_t rows; /* rows whose last byte is in this chunk or an earlier one */
};

struct brun {
    struct gw_call *call;
    struct gw_store_bulk_req *sreq;
    struct gw_audit_req *areq;
    char id[37], export_id[37], requester[72];
    char op[8];
    char scope[32];
    char purpose[GW_BULK_TEXT_MAX + 1], legal_basis[GW_BULK_TEXT_MAX + 1];
    char selector[160], detail[240];
    struct gw_bulk_sel sel;
    char sel_branch[32], sel_from[11], sel_to[11];
    char *sel_ids;        /* gw_malloc'd */
    int64_t record_count; /* approved (counted at request time); a destruction's, once counted
                           * at run time (never more): what it deletes */
    int64_t run_count;    /* an export's: what its bulk.run record counts, at most this many */
    int level;            /* the highest security level it selects, releases or destroys: the
                           * lower of the requester's role's now and the request's max_level */
    uint8_t rcpt[GW_XSEAL_PUB_LEN]; /* the key the caller gave (rcpt_given), then the approved
                                     * one, which the output is sealed to */
    bool rcpt_given;
    char rcpt_hex[65], rcpt_fp[17]; /* the approved key as stored, its fingerprint */
    uint8_t header[GW_XSEAL_HEADER_LEN];
    uint8_t eid[GW_XSEAL_ID_LEN];
    uint8_t ekey[GW_WM_KEY_LEN];
    struct gw_xseal *xs;
    EVP_MD_CTX *md;
    struct gw_arena *page;
    uint8_t *plain; /* the chunk being filled, GW_XSEAL_CHUNK_MAX bytes */
    size_t plen;
    struct chunk queue[QUEUE_MAX];
    size_t qhead, qlen;
    uint64_t offset, records, skipped;
    uint64_t rows_closed; /* rows whose last byte is in the stream (sealed or not) */
    uint64_t rows_sent;   /* rows whose last byte is in a chunk handed to the call */
    char after[37];
    bool have_after, reading_done, final_queued;
    bool streaming; /* its bulk.run record committed, its last chunk not yet sent */
    char sha256[65];
};

static void cleanup(struct brun *r)
{
    gw_store_bulk_cancel(r->sreq);
    r->sreq = NULL;
    gw_audit_cancel(r->areq);
    r->areq = NULL;
    gw_xseal_free(r->xs);
    r->xs = NULL;
    EVP_MD_CTX_free(r->md);
    r->md = NULL;
    gw_arena_free(r->page);
    r->page = NULL;
    if (r->plain != NULL)
        gw_free_wipe(r->plain, GW_XSEAL_CHUNK_MAX);
    r->plain = NULL;
    for (size_t i = 0; i < r->qlen; i++) {
        struct chunk *c = &r->queue[(r->qhead + i) % QUEUE_MAX];
        gw_free(c->data);
        c->data = NULL;
    }
    r->qlen = 0;
    gw_free(r->sel_ids);
    r->sel_ids = NULL;
    OPENSSL_cleanse(r->ekey, sizeof(r->ekey));
}

/* A bulk.run record after the run's first (outcome, what was released, detail), which nobody
 * waits for: the call is ending or everything was sent. */
static void record_after(struct brun *r, const char *outcome, uint64_t count, const char *detail)
{
    struct gw_audit_rec rec;

    gw_api_bulk_rec(r->call, &rec, "bulk.run", r->id, outcome);
    rec.count = (int64_t)count;
    rec.purpose = r->purpose;
    rec.legal_basis = r->legal_basis;
    rec.approval = r->id;
    rec.detail = detail;
    gw_api_record_unwaited(r->call, &rec);
}

/* The run stopped while streaming: a bulk.run record says so, with the records the client could
 * have received whole, and why (words of a rule, never a value). Nobody waits for it: the call
 * is ending. */
static void record_stop(struct brun *r, const char *why)
{
    char detail[GW_AUDIT_TEXT_MAX];

    if (!r->streaming)
        return;
    r->streaming = false;
    snprintf(detail, sizeof(detail),
             "kind=%s export=%s stopped after %" PRIu64 " of %" PRId64 " records: %s", r->op,
             r->export_id, r->rows_sent, r->run_count, why);
    record_after(r, "stopped", r->rows_sent, detail);
}

#define CALL_ENDED                                                                                 \
    "the call ended before the last chunk (cancelled by the client, its deadline, a client that "  \
    "stopped reading, or the gateway stopping)"

/* A claim's stop record is written, or its guard found no claim (failed_stmt 0: the run never
 * executed, nothing to say), or it failed, which only the log can say. */
static void claim_stop_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    (void)arg;
    (void)seq;
    if (err != 0 && !(err == GW_EINTERNAL && res != NULL && res->failed_stmt == 0))
        GW_LOG(GW_LOG_ERROR, "bulk", NULL,
               "the stop of a bulk run cancelled during its claim was not recorded: %s",
               gw_err_str(err));
}

/* The call ends while an export's claim (the request executed, its bulk.run record) is being
 * written: once sent, that transaction commits or not whatever the caller does, and nothing will
 * be streamed. A stopped record (none of the records sent) is queued behind it, guarded by the
 * claim (gw_store_bulk_claimed): written exactly when the claim committed; a claim not yet sent
 * is dropped by cleanup (gw_audit_cancel), and its guard then leaves no record either. */
static void record_claim_stop(struct brun *r)
{
    struct gw_store_bulk_stmt st;
    struct gw_audit_rec rec;
    char detail[GW_AUDIT_TEXT_MAX];

    if (r->areq == NULL || r->streaming || strcmp(r->op, "destroy") == 0)
        return;
    snprintf(detail, sizeof(detail),
             "kind=%s export=%s stopped after 0 of %" PRId64 " records: %s, while the run was "
             "being recorded",
             r->op, r->export_id, r->run_count, CALL_ENDED);
    gw_store_bulk_claimed(&st, r->id, r->export_id);
    gw_api_bulk_rec(r->call, &rec, "bulk.run", r->id, "stopped");
    rec.count = 0;
    rec.purpose = r->purpose;
    rec.legal_basis = r->legal_basis;
    rec.approval = r->id;
    rec.detail = detail;
    if (gw_audit_write_kept(gw_call_app(r->call)->audit, &st.st, 1, &rec, 1, claim_stop_cb, NULL) !=
        0)
        GW_LOG(GW_LOG_ERROR, "bulk", gw_call_log_ctx(r->call),
               "the stop of bulk run %s during its claim could not be queued", r->id);
}

static void cancel_cb(void *arg)
{
    record_claim_stop(arg);
    record_stop(arg, CALL_ENDED);
    cleanup(arg);
}

/* Ends the run with err. Once it streams its request is spent: the database out of reach, or
 * its queue full, is then not the "retrying is safe" of a call that did nothing. */
static void fail(struct brun *r, int err, const char *field, enum gw_rule rule)
{
    struct gw_fault f;
    char why[256];

    gw_call_set_cancel(r->call, NULL, NULL);
    if (r->streaming && (err == GW_EUNAVAIL || err == GW_EQUEUEFULL)) {
        err = GW_EUNAVAIL;
        field = NULL;
        rule = GW_RULE_BULK_RUN_CUT;
    }
    if (r->streaming) {
        (void)gw_fault_set(&f, err, NULL, field, rule);
        gw_fault_format(&f, why, sizeof(why));
        record_stop(r, why);
    }
    cleanup(r);
    gw_call_fail(r->call, err, field, rule);
}

/* A refused run: its record (outcome refused), then the refusal. */
static void refuse(struct brun *r, const char *why, int err, const char *field, enum gw_rule rule)
{
    struct gw_audit_rec rec;

    gw_api_bulk_rec(r->call, &rec, "bulk.run", r->id, "refused");
    rec.approval = r->id;
    rec.detail = why;
    cleanup(r);
    gw_api_bulk_refuse(r->call, &rec, err, field, rule);
}

static void after_write_fail(struct brun *r, int err)
{
    fail(r, gw_err_queue_full_or(err, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL), NULL,
         err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_ACCESS_NOT_RECORDED);
}

/* ---- the sealed stream ---- */

/* Queues data (taken over) as the next output bytes. */
static int push(struct brun *r, uint8_t *data, size_t len)
{
    if (r->qlen == QUEUE_MAX) {
        gw_free(data);
        return GW_ETOOBIG;
    }
    if (EVP_DigestUpdate(r->md, data, len) != 1) {
        gw_free(data);
        return GW_ECRYPTO;
    }
    r->queue[(r->qhead + r->qlen) % QUEUE_MAX] = (struct chunk){data, len, r->rows_closed};
    r->qlen++;
    return 0;
}

/* Seals the chunk being filled (final: the last one) and queues it. */
static int seal_plain(struct brun *r, bool final)
{
    uint8_t *out = gw_malloc(r->plen + GW_XSEAL_OVERHEAD);
    int rc;

    if (out == NULL)
        return GW_ENOMEM;
    rc = gw_xseal_chunk(r->xs, r->plain, r->plen, final, out);
    OPENSSL_cleanse(r->plain, r->plen);
    if (rc != 0) {
        gw_free(out);
        return rc;
    }
    rc = push(r, out, r->plen + GW_XSEAL_OVERHEAD);
    r->plen = 0;
    return rc;
}

/* Appends plaintext, sealing every full chunk. */
static int add(struct brun *r, const void *p, size_t n)
{
    const uint8_t *s = p;
    int rc;

    while (n > 0) {
        size_t k = GW_XSEAL_CHUNK_MAX - r->plen;
        if (k > n)
            k = n;
        memcpy(r->plain + r->plen, s, k);
        r->plen += k;
        s += k;
        n -= k;
        if (r->plen == GW_XSEAL_CHUNK_MAX && (rc = seal_plain(r, false)) != 0)
            return rc;
    }
    return 0;
}

/* One row: base64(WaybillView) " " tag "\n". */
static int add_row(struct brun *r, const Waygate__V1__WaybillView *v)
{
    size_t n = waygate__v1__waybill_view__get_packed_size(v);
    size_t b64n = 4 * ((n + 2) / 3);
    uint8_t *packed = gw_arena_alloc(r->page, n + 1);
    char *b64 = gw_arena_alloc(r->page, b64n + 1);
    char tag[GW_WM_TAG_HEX + 1];
    int rc;

    if (packed == NULL || b64 == NULL)
        return GW_ENOMEM;
    waygate__v1__waybill_view__pack(v, packed);
    EVP_EncodeBlock((unsigned char *)b64, packed, (int)n);
    OPENSSL_cleanse(packed, n);
    rc = gw_wm_tag(gw_call_app(r->call)->crypto, r->ekey, b64, b64n, tag);
    if (rc == 0)
        rc = add(r, b64, b64n);
    if (rc == 0)
        rc = add(r, " ", 1);
    if (rc == 0)
        rc = add(r, tag, GW_WM_TAG_HEX);
    if (rc == 0) {
        r->rows_closed++; /* its last byte next: a chunk sealed from here holds it whole */
        rc = add(r, "\n", 1);
    }
    OPENSSL_cleanse(b64, b64n);
    return rc;
}

static void next_page(struct brun *r);

/* The run released fewer records than its bulk.run record counts (some left out as it read
 * them: unreadable, each an incident of its own, or outside the bulk scope): a second record,
 * outcome short, counts what was released. Nobody waits for it: everything was sent. */
static void record_short(struct brun *r)
{
    char detail[GW_AUDIT_TEXT_MAX];

    if (strcmp(r->op, "destroy") == 0 || r->records >= (uint64_t)r->run_count)
        return;
    snprintf(detail, sizeof(detail),
             "kind=%s export=%s released %" PRIu64 " of %" PRId64
             " records: the others left out (unreadable or outside the bulk scope)",
             r->op, r->export_id, r->records, r->run_count);
    record_after(r, "short", r->records, detail);
}

static void finish_ok(struct brun *r)
{
    GW_LOG(GW_LOG_INFO, "bulk", gw_call_log_ctx(r->call),
           "bulk %s run: request=%s export=%s records=%" PRIu64 " left out (unreadable or outside "
           "the bulk scope)=%" PRIu64,
           r->op, r->id, r->export_id, r->records, r->skipped);
    r->streaming = false;
    record_short(r);
    gw_call_set_cancel(r->call, NULL, NULL);
    cleanup(r);
    gw_call_finish(r->call, GW_GRPC_OK, NULL);
}

/* Sends queued chunks while the client reads; then reads on, or ends. */
static void flush(void *arg)
{
    struct brun *r = arg;
    int rc;

    while (r->qlen > 0) {
        Waygate__V1__RunBulkChunk m = WAYGATE__V1__RUN_BULK_CHUNK__INIT;
        struct chunk *c = &r->queue[r->qhead];

        if (!gw_call_writable(r->call)) {
            gw_call_on_writable(r->call, flush, r);
            return;
        }
        m.offset = r->offset;
        m.data.data = c->data;
        m.data.len = c->len;
        m.records_done = r->records;
        if (r->qlen == 1 && r->final_queued) {
            m.last = true;
            m.watermark_id = r->export_id;
            m.sha256 = r->sha256;
        }
        rc = gw_call_send(r->call, &m.base);
        if (rc != 0) {
            fail(r, rc, NULL, GW_RULE_NOT_RENDERED);
            return;
        }
        r->offset += c->len;
        r->rows_sent = c->rows;
        gw_free(c->data);
        c->data = NULL;
        r->qhead = (r->qhead + 1) % QUEUE_MAX;
        r->qlen--;
    }
    if (r->final_queued) {
        finish_ok(r);
    } else if (!gw_call_writable(r->call)) { /* no page read the stream cannot take yet */
        gw_call_on_writable(r->call, flush, r);
    } else {
        next_page(r);
    }
}

static int queue_final(struct brun *r)
{
    unsigned char d[32];
    unsigned int dn = 0;
    int rc = seal_plain(r, true);

    if (rc != 0)
        return rc;
    if (EVP_DigestFinal_ex(r->md, d, &dn) != 1 || dn != 32)
        return GW_ECRYPTO;
    for (unsigned i = 0; i < 32; i++)
        snprintf(r->sha256 + 2 * i, 3, "%02x", d[i]);
    r->final_queued = true;
    return 0;
}

static bool in_bulk_scope(struct brun *r, const struct gw_store_row *row)
{
    struct gw_policy_record rec = {.origin_branch = row->w.origin_branch,
                                   .dest_branch = row->dest_branch,
                                   .security_level = row->w.security_level};

    return gw_policy_in_bulk_scope(gw_call_policy(r->call), gw_call_principal(r->call), &rec);
}

/* The frozen selection grew: past the approved count when the run counts it, or, while the run
 * reads it, past the records counted a moment before. Only a changed request or waybill row (or a
 * transaction that committed a record of the request's second this late) can do that. Like a
 * record that fails authentication, a sign that stored data changed under the gateway: a high
 * incident, beside the refused or stopped record. */
static void grew_incident(struct brun *r, const char *detail)
{
    GW_LOG(GW_LOG_WARN, "bulk", gw_call_log_ctx(r->call), "%s", detail);
    gw_api_incident(r->call, "high", "bulk_selection_grew", detail, NULL);
}

static void run_over_incident(struct brun *r)
{
    char detail[200];

    snprintf(detail, sizeof(detail),
             "bulk request %s selected more records than the %" PRId64
             " its bulk.run record counts; the run stopped",
             r->id, r->run_count);
    grew_incident(r, detail);
}

/* The run counted more than was approved: refused before anything is released or destroyed. */
static void refuse_grown(struct brun *r, int64_t count)
{
    char detail[200];

    snprintf(detail, sizeof(detail),
             "bulk request %s selects %" PRId64 " records, more than the %" PRId64
             " approved; the run was refused",
             r->id, count, r->record_count);
    grew_incident(r, detail);
    refuse(r, "selects more records than approved", GW_EPRECOND, "request_id",
           GW_RULE_BULK_SELECTION_GREW);
}

static void rows_cb(void *arg, int err, const struct gw_store_row *rows, size_t n)
{
    struct brun *r = arg;
    struct gw_str clear[GW_COL_COUNT];
    int rc = 0;

    r->sreq = NULL;
    if (err != 0) {
        fail(r, err, NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
        return;
    }
    gw_arena_free(r->page);
    if ((r->page = gw_arena_new(PAGE_ARENA)) == NULL) {
        fail(r, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        Waygate__V1__WaybillView v = WAYGATE__V1__WAYBILL_VIEW__INIT;

        gw_store_id_text(rows[i].w.id, r->after);
        r->have_after = true;
        rc = gw_api_open_row_in(r->call, r->page, &rows[i].w, NULL, 0, clear);
        if (rc == GW_EDATALOSS || rc == GW_EPRECOND) { /* incident recorded; left out */
            r->skipped++;
            rc = 0;
            continue;
        }
        if (rc == 0 && !in_bulk_scope(r, &rows[i])) {
            r->skipped++;
            continue;
        }
        if (rc == 0 && r->records >= (uint64_t)r->run_count) {
            /* a record the bulk.run record does not count (the scope grew since the count, or
             * a late commit): stop rather than release it */
            run_over_incident(r);
            fail(r, GW_EPRECOND, "request_id", GW_RULE_BULK_RUN_OVER);
            return;
        }
        if (rc == 0)
            rc = gw_api_render_view_in(r->call, r->page, &rows[i].w, clear, &v);
        if (rc == 0)
            rc = add_row(r, &v);
        if (rc == 0)
            r->records++;
    }
    if (rc == 0 && n < PAGE_ROWS) {
        r->reading_done = true;
        rc = queue_final(r);
    }
    if (rc != 0) {
        fail(r, rc, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    flush(r);
}

static void next_page(struct brun *r)
{
    int rc = gw_store_bulk_rows(gw_call_app(r->call)->store, r->scope, r->id, r->level,
                                r->have_after ? r->after : NULL, PAGE_ROWS, rows_cb, r, &r->sreq);

    if (rc != 0)
        fail(r, rc, NULL, rc == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
}

/* The run is recorded and the request executed: the header, then the rows. */
static void claimed_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct brun *r = arg;
    char first[64];
    uint8_t *h;
    int rc = 0;

    (void)seq;
    r->areq = NULL;
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 0 && res->sqlstate != NULL &&
        strcmp(res->sqlstate, GW_BULK_KEY_CHANGED) == 0) {
        /* the stored key is not the one read, checked and sealed to, or not the one the
         * approver's record names (gw_store_bulk_key): changed in the database since, which the
         * gateway never does; nothing released */
        gw_api_bulk_key_changed(r->call, r->id, r->rcpt_fp, true);
        refuse(r, "recipient key changed", GW_EPRECOND, "request_id", GW_RULE_BULK_KEY_CHANGED);
        return;
    }
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 1) { /* run meanwhile */
        refuse(r, "not approved", GW_EPRECOND, "request_id", GW_RULE_BULK_NOT_APPROVED);
        return;
    }
    if (err != 0) {
        after_write_fail(r, err);
        return;
    }
    r->streaming = true; /* from here a stop is recorded (record_stop) */
    if ((h = gw_malloc(sizeof(r->header))) == NULL)
        rc = GW_ENOMEM;
    if (rc == 0) {
        memcpy(h, r->header, sizeof(r->header));
        rc = push(r, h, sizeof(r->header));
    }
    snprintf(first, sizeof(first), "waygate-export v1 %s\n", r->export_id);
    if (rc == 0)
        rc = add(r, first, strlen(first));
    if (rc != 0) {
        fail(r, rc, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    flush(r);
}

/* ---- destruction ---- */

static void destroyed_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    Waygate__V1__RunBulkChunk m = WAYGATE__V1__RUN_BULK_CHUNK__INIT;
    struct brun *r = arg;
    int rc;

    (void)seq;
    r->areq = NULL;
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 1) {
        refuse(r, "not approved", GW_EPRECOND, "request_id", GW_RULE_BULK_NOT_APPROVED);
        return;
    }
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 2 && res->sqlstate != NULL &&
        strcmp(res->sqlstate, GW_BULK_HELD) == 0) {
        /* sql/038: a selected record is held by a lawful-access case; the claim went with the
         * transaction, so the request stays approved and the refusal is recorded */
        refuse(r, "lawful hold", GW_EPRECOND, "request_id", GW_RULE_BULK_LAWFUL_HOLD);
        return;
    }
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 2 &&
        gw_store_bulk_contended(res->sqlstate)) {
        /* gave way to another transaction's locks (a suite migration's or rewrap's batch, a
         * retention sweep): not the selection's fault; the claim went with the transaction, so
         * the request stays approved and runs again */
        refuse(r, "lock conflict: retry", GW_EUNAVAIL, NULL, GW_RULE_BULK_CONTENDED);
        return;
    }
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 2) {
        refuse(r, "selection changed", GW_EPRECOND, "request_id", GW_RULE_BULK_SELECTION_CHANGED);
        return;
    }
    if (err != 0) {
        after_write_fail(r, err);
        return;
    }
    r->records = (uint64_t)r->record_count;
    m.records_done = r->records;
    m.last = true;
    rc = gw_call_send(r->call, &m.base);
    if (rc != 0) {
        fail(r, rc, NULL, GW_RULE_NONE);
        return;
    }
    finish_ok(r);
}

static void counted_for_destroy_cb(void *arg, int err, int64_t count)
{
    struct brun *r = arg;
    struct gw_store_bulk_stmt st[3];
    struct gw_audit_rec rec;
    int rc;

    r->sreq = NULL;
    if (err != 0) {
        fail(r, err, NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
        return;
    }
    if (count > r->record_count) { /* bulk_destroy (sql/022) refuses it too */
        refuse_grown(r, count);
        return;
    }
    r->record_count = count;
    gw_store_bulk_scope(&st[0], r->scope);
    gw_store_bulk_claim(&st[1], r->id, r->requester, NULL, NULL);
    gw_store_bulk_destroy_request(&st[2], r->id, r->selector, count, r->level);
    snprintf(r->detail, sizeof(r->detail), "kind=destroy %s", r->selector);
    gw_api_bulk_rec(r->call, &rec, "bulk.run", r->id, "ok");
    rec.count = count;
    rec.purpose = r->purpose;
    rec.legal_basis = r->legal_basis;
    rec.approval = r->id;
    rec.detail = r->detail;
    {
        struct gw_db_stmt s[3] = {st[0].st, st[1].st, st[2].st};
        rc = gw_audit_write(gw_call_app(r->call)->audit, s, 3, &rec, 1, destroyed_cb, r, &r->areq);
    }
    if (rc != 0)
        fail(r, rc, NULL, GW_RULE_ACCESS_NOT_RECORDED);
}

/* ---- start ---- */

static void copy_text(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

/* Copies the stored selector (the destruction counts by it again); its text with r->level. */
static int keep_selector(struct brun *r, const struct gw_bulk_row *row)
{
    copy_text(r->sel_branch, sizeof(r->sel_branch), row->sel_branch);
    copy_text(r->sel_from, sizeof(r->sel_from), row->sel_from);
    copy_text(r->sel_to, sizeof(r->sel_to), row->sel_to);
    r->sel.branch = row->sel_branch != NULL ? r->sel_branch : NULL;
    r->sel.from_day = row->sel_from != NULL ? r->sel_from : NULL;
    r->sel.to_day = row->sel_to != NULL ? r->sel_to : NULL;
    if (row->sel_ids != NULL && (r->sel_ids = gw_strdup(row->sel_ids)) == NULL)
        return GW_ENOMEM;
    r->sel.ids = r->sel_ids;
    gw_api_bulk_selector_text(r->sel.branch, r->sel.from_day, r->sel.to_day, r->sel.ids, r->level,
                              r->selector, sizeof(r->selector));
    return 0;
}

static void start_export(struct brun *r)
{
    struct gw_app *app = gw_call_app(r->call);
    struct gw_store_bulk_stmt st[2];
    struct gw_audit_rec rec;
    int rc;

    if (gw_api_bulk_new_id(r->call, r->eid, r->export_id) != 0 ||
        gw_wm_export_key(app->crypto, gw_keyring_watermark_key(app->keys), r->eid, r->ekey) != 0 ||
        (r->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1 ||
        (r->plain = gw_malloc(GW_XSEAL_CHUNK_MAX)) == NULL) {
        fail(r, GW_ECRYPTO, NULL, GW_RULE_NONE);
        return;
    }
    rc = gw_xseal_new(r->rcpt, r->eid, r->header, &r->xs);
    if (rc != 0) { /* before the claim: a bad key leaves the request approved */
        fail(r, rc, rc == GW_EINVAL ? "recipient_public_key" : NULL,
             rc == GW_EINVAL ? GW_RULE_BULK_RECIPIENT_KEY : GW_RULE_NONE);
        return;
    }
    /* Art. 37, "where": the key the output is sealed to, the one requested and approved (the
     * claim holds only with it stored), named by the first 8 bytes of its SHA-256 */
    gw_store_bulk_key(&st[0], r->id, r->rcpt_hex, true); /* fails: the key changed */
    gw_store_bulk_claim(&st[1], r->id, r->requester, r->export_id, r->rcpt_hex);
    snprintf(r->detail, sizeof(r->detail), "kind=%s export=%s rcpt=%s %s", r->op, r->export_id,
             r->rcpt_fp, r->selector);
    gw_api_bulk_rec(r->call, &rec, "bulk.run", r->id, "ok");
    rec.count = r->run_count; /* the frozen selection within the requester's levels, counted
                               * now: the most the stream sends (fewer: record_short) */
    rec.purpose = r->purpose;
    rec.legal_basis = r->legal_basis;
    rec.approval = r->id;
    rec.detail = r->detail;
    {
        struct gw_db_stmt s[2] = {st[0].st, st[1].st};
        rc = gw_audit_write(app->audit, s, 2, &rec, 1, claimed_cb, r, &r->areq);
    }
    if (rc != 0)
        fail(r, rc, NULL, GW_RULE_ACCESS_NOT_RECORDED);
}

/* The frozen selection counted: never more than was approved. */
static void counted_for_export_cb(void *arg, int err, int64_t count)
{
    struct brun *r = arg;

    r->sreq = NULL;
    if (err != 0) {
        fail(r, err, NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
        return;
    }
    if (count > r->record_count) {
        refuse_grown(r, count);
        return;
    }
    r->run_count = count;
    start_export(r);
}

/* An export or copy is sealed to the key its request was approved with (sql/040): a key the
 * caller gives must be that one, and a request stored without one (before sql/040) does not
 * run; either refusal is recorded, before anything is counted or released. */
static bool approved_key(struct brun *r, const struct gw_bulk_row *row)
{
    uint8_t key[GW_XSEAL_PUB_LEN];
    char hex[65], fp[17];
    int rc;

    if (row->recipient_key == NULL) {
        refuse(r, "no approved recipient key (requested before keys were)", GW_EPRECOND,
               "request_id", GW_RULE_BULK_NO_APPROVED_KEY);
        return false;
    }
    if ((rc = gw_api_bulk_key_parse(row->recipient_key, key)) != 0 ||
        (rc = gw_api_bulk_key_text(key, r->rcpt_hex, r->rcpt_fp)) != 0) {
        fail(r, rc, NULL, rc == GW_ECRYPTO ? GW_RULE_NONE : GW_RULE_NOT_READ);
        return false;
    }
    if (r->rcpt_given && memcmp(r->rcpt, key, sizeof(key)) != 0) {
        if (gw_api_bulk_key_text(r->rcpt, hex, fp) != 0)
            snprintf(fp, sizeof(fp), "?");
        snprintf(r->detail, sizeof(r->detail),
                 "recipient key not the approved one: given rcpt=%s, approved rcpt=%s", fp,
                 r->rcpt_fp);
        refuse(r, r->detail, GW_EPRECOND, "recipient_public_key", GW_RULE_BULK_KEY_NOT_APPROVED);
        return false;
    }
    memcpy(r->rcpt, key, sizeof(key));
    return true;
}

static void loaded_cb(void *arg, int err, const struct gw_bulk_row *row)
{
    struct brun *r = arg;
    const struct gw_principal *p = gw_call_principal(r->call);
    int rc;

    r->sreq = NULL;
    if (err != 0) {
        if (err == GW_ENOTFOUND) /* no such id, or one above the caller's level: alike */
            refuse(r, "no such request", GW_ENOTFOUND, "request_id", GW_RULE_NONE);
        else
            fail(r, err, NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
        return;
    }
    copy_text(r->op, sizeof(r->op), row->operation);
    copy_text(r->purpose, sizeof(r->purpose), row->purpose);
    copy_text(r->legal_basis, sizeof(r->legal_basis), row->legal_basis);
    r->record_count = row->record_count;
    if (strcmp(row->requester, p->name) != 0) {
        refuse(r, "not the requester", GW_EPERM, "request_id", GW_RULE_BULK_NOT_REQUESTER);
        return;
    }
    if (strcmp(row->state, "approved") != 0) {
        refuse(r, "not approved", GW_EPRECOND, "request_id", GW_RULE_BULK_NOT_APPROVED);
        return;
    }
    if (row->expired) {
        refuse(r, "approval expired", GW_EPRECOND, "request_id", GW_RULE_BULK_EXPIRED);
        return;
    }
    r->level = gw_policy_max_level(gw_call_policy(r->call), p->role);
    if (row->max_level < r->level) /* never above what was counted and approved */
        r->level = row->max_level;
    if ((rc = keep_selector(r, row)) != 0) {
        fail(r, rc, NULL, GW_RULE_NONE);
        return;
    }
    if (strcmp(r->op, "destroy") == 0) { /* the frozen selection, as an export's */
        rc = gw_store_bulk_count_run(gw_call_app(r->call)->store, r->scope, r->id, r->level,
                                     counted_for_destroy_cb, r, &r->sreq);
        if (rc != 0)
            fail(r, rc, NULL, rc == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
        return;
    }
    if (!approved_key(r, row))
        return;
    rc = gw_store_bulk_count_run(gw_call_app(r->call)->store, r->scope, r->id, r->level,
                                 counted_for_export_cb, r, &r->sreq);
    if (rc != 0)
        fail(r, rc, NULL, rc == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
}

void gw_api_compliance_run_bulk(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__RunBulkRequest *in;
    ProtobufCMessage *msg;
    struct brun *r;
    int rc;

    r = gw_api_bulk_start(call, &waygate__v1__run_bulk_request__descriptor, req, len, sizeof(*r),
                          &msg);
    if (r == NULL)
        return;
    in = (Waygate__V1__RunBulkRequest *)msg;
    r->call = call;
    if (!gw_api_bulk_request_id(call, in->request_id, r->id))
        return;
    if (in->recipient_public_key.len != 0 && in->recipient_public_key.len != GW_XSEAL_PUB_LEN) {
        gw_call_fail(call, GW_EINVAL, "recipient_public_key", GW_RULE_BULK_RECIPIENT_KEY);
        return;
    }
    if (in->recipient_public_key.len == GW_XSEAL_PUB_LEN) {
        memcpy(r->rcpt, in->recipient_public_key.data, GW_XSEAL_PUB_LEN);
        r->rcpt_given = true;
    }
    copy_text(r->requester, sizeof(r->requester), gw_call_principal(call)->name);
    copy_text(r->scope, sizeof(r->scope), gw_api_bulk_scope(call));
    rc = gw_store_bulk_load(gw_call_app(call)->store, r->id, gw_call_app(call)->cfg->approval_ttl_s,
                            loaded_cb, r, &r->sreq);
    if (rc != 0) {
        gw_api_read_failed_bulk(call, rc);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, r);
}
