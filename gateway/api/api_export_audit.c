/* api_export_audit.c: waygate.v1.Compliance/ExportAudit (compliance_auditor, Art. 33): streams a
 * sealed audit bundle (docs/audit-bundle-format.md) of the records with time in [from_time,
 * to_time), in ExportAuditChunk messages of at most CHUNK bytes, the last one carrying the
 * SHA-256 of the whole bundle. The bundle is the one `waygatectl audit export` writes (same
 * writer, same spans), sealed with the keyring's audit key.
 * Invariants: the export is an audit record (audit.export) committed before any byte of the
 * bundle is read or sent (fail closed: no record, no bundle); the trail is read one batch at a time
 * (store/audit_scan.h) and the next batch (the first one too) is asked for only once the stream has
 * taken what the last one produced and is writable (its queue and the response budgets have room,
 * h2.h), so memory per call is one batch whatever the range and the client's reading speed, and a
 * call whose stream waits for response memory holds no batch beyond the part not yet sent; a
 * batch being read holds BATCH_HOLD of the response budgets (gw_call_hold), and once read, its
 * whole chunks not yet sent are held instead, so the calls' buffers are bounded by the budgets
 * too (but for less than one chunk each);
 * the writer and the scan are freed on every path (finish, failure, cancel). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "waygate/v1/compliance.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "audit_bundle.h"
#include "audit_scan.h"
#include "audit_signer.h"
#include "keyring.h"
#include "log.h"

#define CHUNK (64 * 1024) /* bundle bytes per message */
#define BATCH 1000        /* records per database request */
/* What one batch is expected to add to the bundle buffer (a record takes about 250 bytes in the
 * bundle): held against the response budgets (gw_call_hold) while the batch is being read, so
 * that many calls starting at once do not all read a batch past the budgets. */
#define BATCH_HOLD (4 * CHUNK)

struct export
{
    struct gw_call *call;
    struct gw_audit_req *rec; /* the audit.export record being written */
    struct gw_audit_scan *scan;
    struct gw_bundle_writer *w;
    /* a copy of the keyring's audit key: a reload (SIGHUP) frees the keyring while an export
     * streams, and the key seals the bundle at its end; wiped in release */
    uint8_t seed[GW_SIGN_SEED_LEN];
    struct gw_sign_key key; /* alg, and the copy above */
    uint8_t seal_pub[GW_SIGN_PUB_MAX];
    size_t seal_publen;
    uint8_t *buf; /* bundle bytes produced and not yet sent */
    size_t len, cap;
    uint64_t offset; /* bundle bytes sent */
    bool keys_done, read_done, finished;
};

static void release(struct export *e)
{
    if (e->rec)
        gw_audit_cancel(e->rec);
    e->rec = NULL;
    gw_audit_scan_free(e->scan);
    gw_bundle_writer_free(e->w);
    gw_free(e->buf);
    gw_wipe(e->seed, sizeof(e->seed));
    e->scan = NULL;
    e->w = NULL;
    e->buf = NULL;
}

static void cancel_cb(void *arg)
{
    release(arg);
}

/* Ends the call with err (0: OK), releasing everything first. */
static void end(struct export *e, int err)
{
    gw_call_set_cancel(e->call, NULL, NULL);
    release(e);
    if (err == 0)
        gw_call_finish(e->call, GW_GRPC_OK, NULL);
    else if (err == GW_EUNAVAIL)
        gw_call_fail(e->call, err, NULL, GW_RULE_DB_UNAVAILABLE);
    else
        gw_call_fail(e->call, err, NULL, GW_RULE_NONE);
}

static int sink_cb(void *arg, const uint8_t *p, size_t n)
{
    struct export *e = arg;
    if (e->len + n > e->cap) {
        size_t ncap = e->cap ? e->cap : CHUNK;
        while (ncap < e->len + n)
            ncap *= 2;
        uint8_t *q = gw_realloc(e->buf, ncap);
        if (!q)
            return GW_ENOMEM;
        e->buf = q;
        e->cap = ncap;
    }
    memcpy(e->buf + e->len, p, n);
    e->len += n;
    return 0;
}

static int send_chunk(struct export *e, size_t n, bool last)
{
    Waygate__V1__ExportAuditChunk m;
    char hex[2 * GW_AUDIT_HASH_LEN + 1] = "";
    int rc;
    waygate__v1__export_audit_chunk__init(&m);
    m.offset = e->offset;
    m.data.data = e->buf;
    m.data.len = n;
    m.last = last;
    if (last) {
        uint8_t d[GW_AUDIT_HASH_LEN];
        gw_bundle_writer_digest(e->w, d);
        for (size_t i = 0; i < sizeof d; i++)
            snprintf(hex + 2 * i, 3, "%02x", d[i]);
        m.sha256 = hex;
    }
    rc = gw_call_send(e->call, &m.base);
    if (rc != 0)
        return rc;
    memmove(e->buf, e->buf + n, e->len - n);
    e->len -= n;
    e->offset += n;
    if (e->len == 0) { /* nothing waits: the buffer is not kept (nor held) while the call waits */
        gw_free(e->buf);
        e->buf = NULL;
        e->cap = 0;
    }
    return 0;
}

static void pump(void *arg);

/* What the call can send without reading more: whole chunks, or all once the bundle is done. */
static size_t sendable(const struct export *e)
{
    return e->read_done ? e->len : e->len - e->len % CHUNK;
}

/* Sends full chunks (and, once the bundle is complete, the rest) while the stream takes them;
 * then asks for the next batch once the stream is writable, or ends the call. */
static void pump(void *arg)
{
    struct export *e = arg;
    int rc;
    gw_call_hold(e->call, sendable(e)); /* no batch in flight: what waits to be sent */
    while (e->len >= CHUNK || (e->read_done && !e->finished)) {
        size_t n = e->len < CHUNK ? e->len : CHUNK;
        bool last = e->read_done && n == e->len;
        if (!gw_call_writable(e->call)) {
            gw_call_on_writable(e->call, pump, e);
            return;
        }
        rc = send_chunk(e, n, last);
        if (rc != 0) {
            end(e, rc);
            return;
        }
        gw_call_hold(e->call, sendable(e));
        if (last)
            e->finished = true;
    }
    if (e->finished) {
        end(e, 0);
        return;
    }
    if (!gw_call_writable(e->call)) { /* no batch read into memory the stream cannot take */
        gw_call_on_writable(e->call, pump, e);
        return;
    }
    gw_call_hold(e->call, BATCH_HOLD);
    rc = gw_audit_scan_step(e->scan);
    if (rc != 0)
        end(e, rc);
}

static int key_cb(void *arg, const uint8_t *pub, size_t publen)
{
    struct export *e = arg;
    if (publen == e->seal_publen && memcmp(pub, e->seal_pub, publen) == 0)
        return 0; /* written last, as the seal's key */
    return gw_bundle_write_key(e->w, pub, publen);
}

/* A stored row the format cannot hold (planted before sql/026 refused such rows) is left out: a
 * `G` item in its place names it to every verifier, and the rest of the trail is exported. */
static int row_cb(void *arg, const struct gw_audit_row *r)
{
    struct export *e = arg;
    int rc = gw_bundle_write_record(e->w, &r->rec, &r->link, r->hash);
    if (rc != GW_EINVAL)
        return rc;
    GW_LOG(GW_LOG_WARN, "audit", gw_call_log_ctx(e->call),
           "audit export: chain %s: seq %lld: not a record the audit format can hold; left out "
           "of the bundle",
           r->link.chain, (long long)r->link.seq);
    return gw_bundle_write_left_out(e->w, r->link.chain, r->link.seq, r->hash);
}

static int ckpt_cb(void *arg, const struct gw_audit_ckpt *c)
{
    struct export *e = arg;
    return gw_bundle_write_checkpoint(e->w, c);
}

static void step_done_cb(void *arg, int err, bool finished)
{
    struct export *e = arg;
    if (err == 0 && !e->keys_done) {
        e->keys_done = true;
        err = gw_bundle_write_key(e->w, e->seal_pub, e->seal_publen);
    }
    if (err == 0 && finished) {
        err = gw_bundle_finish(e->w, &e->key);
        e->read_done = true;
    }
    if (err != 0) {
        end(e, err);
        return;
    }
    pump(e);
}

static const struct gw_audit_scan_ops scan_ops = {key_cb, row_cb, ckpt_cb, step_done_cb};

/* The export is recorded (audit.export, Art. 33) before any of the bundle leaves: fail closed. */
static void recorded_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct export *e = arg;
    (void)seq;
    (void)res;
    e->rec = NULL;
    if (err != 0) { /* not recorded: nothing is sent */
        gw_call_set_cancel(e->call, NULL, NULL);
        release(e);
        gw_call_fail(e->call, gw_err_queue_full_or(err, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    pump(e); /* the first batch, once the stream is writable */
}

static int record_export(struct export *e, int64_t from, int64_t to)
{
    char object[64];
    snprintf(object, sizeof object, "%lld..%lld", (long long)from, (long long)to);
    struct gw_audit_rec r;

    gw_api_record_init(e->call, "audit.export", &r);
    r.object = object;
    r.detail = "time range in seconds since the epoch, [from, to)";
    return gw_audit_write(gw_call_app(e->call)->audit, NULL, 0, &r, 1, recorded_cb, e, &e->rec);
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

void gw_api_compliance_export_audit(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct gw_app *app = gw_call_app(call);
    const struct gw_principal *p = gw_call_principal(call);
    Waygate__V1__ExportAuditRequest *in;
    struct export *e;
    int64_t to;
    int rc;

    if (!app || !app->db || !app->keys || !app->audit) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return;
    }
    in = (Waygate__V1__ExportAuditRequest *)gw_call_unpack(
        call, &waygate__v1__export_audit_request__descriptor, req, len);
    if (!in)
        return;
    to = in->to_time != 0 ? in->to_time : now_s() + 1;
    if (in->from_time < 0 || in->from_time > INT64_MAX / 1000000) {
        gw_call_fail(call, GW_EINVAL, "from_time", GW_RULE_AUDIT_RANGE);
        return;
    }
    if (to <= in->from_time || to > INT64_MAX / 1000000) {
        gw_call_fail(call, GW_EINVAL, "to_time", GW_RULE_AUDIT_RANGE);
        return;
    }
    e = gw_arena_alloc(gw_call_arena(call), sizeof *e);
    if (!e) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    memset(e, 0, sizeof *e);
    e->call = call;
    if (gw_audit_signer(app->keys, &e->key) != 0) {
        gw_call_fail(call, GW_EPRECOND, NULL, GW_RULE_KEY_UNAVAILABLE);
        return;
    }
    memcpy(e->seed, e->key.seed, sizeof(e->seed));
    e->key.seed = e->seed;
    if (gw_sign_public(&e->key, e->seal_pub, &e->seal_publen) != 0) {
        gw_wipe(e->seed, sizeof(e->seed));
        gw_call_fail(call, GW_EPRECOND, NULL, GW_RULE_KEY_UNAVAILABLE);
        return;
    }
    struct gw_bundle_header h = {"waygated", (int64_t)time(NULL) * 1000000, in->from_time * 1000000,
                                 to * 1000000, p->name};
    rc = gw_bundle_writer_new(sink_cb, e, &h, &e->w);
    if (rc == 0)
        rc = gw_audit_scan_new(app->db, h.from_us, h.to_us, BATCH, &scan_ops, e, &e->scan);
    if (rc == 0)
        rc = record_export(e, in->from_time, to);
    if (rc != 0) {
        release(e);
        gw_call_fail(call, rc, NULL, rc == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NONE);
        return;
    }
    GW_LOG(GW_LOG_INFO, "audit", gw_call_log_ctx(call), "audit export of [%lld, %lld) started",
           (long long)in->from_time, (long long)to);
    gw_call_set_cancel(call, cancel_cb, e);
}
