/* audit_ctl.c: waygatectl's appends to the audit chain 'ctl' (audit_ctl.h). Like the gateway's
 * writer (audit.c), it does not chain onto a head it cannot vouch for: one no key of its signed
 * must give its stored hash and link to the record before it, else an audit.break record starts
 * a new segment linked to nothing (gw_audit_head_fault). */
#include "audit_ctl.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "audit_read.h"
#include "clock.h"
#include "pq_msg.h"
#include "store_admin_int.h"

/* Runs sql (binary results) and checks its status; returns the result or NULL after errbuf. */
static PGresult *run(struct gw_admin *a, const char *sql, int n, const char *const *v, const int *l,
                     const int *f, char *errbuf, size_t errlen)
{
    PGresult *res = PQexecParams(a->pg, sql, n, NULL, v, l, f, 1);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        gw_admin_refused(res, a, errbuf, errlen);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int checkpoint(struct gw_admin *a, const struct gw_sign_key *key, int64_t seq,
                      const uint8_t head[GW_AUDIT_HASH_LEN], int64_t at, char *errbuf,
                      size_t errlen)
{
    uint8_t pub[GW_SIGN_PUB_MAX], sig[GW_SIGN_SIG_MAX], msg[256];
    char key_id[65], seq_txt[24], at_txt[24];
    size_t len = 0, publen = 0, siglen = 0;
    PGresult *res;

    if (gw_sign_public(key, pub, &publen) != 0 || gw_audit_key_id(pub, publen, key_id) != 0 ||
        gw_audit_checkpoint_msg(GW_AUDIT_CTL_CHAIN, seq, head, at, msg, sizeof msg, &len) != 0 ||
        gw_sign(key, msg, len, sig, &siglen) != 0) {
        snprintf(errbuf, errlen, "audit checkpoint: signing failed");
        return GW_EINTERNAL;
    }
    const char *kv[3] = {key_id, (const char *)pub, gw_sign_alg_name(key->alg)};
    const int kl[3] = {0, (int)publen, 0}, kf[3] = {0, 1, 0};
    res = run(a,
              "INSERT INTO audit_key (key_id, public_key, algorithm) VALUES ($1, $2, $3) "
              "ON CONFLICT (key_id) DO NOTHING",
              3, kv, kl, kf, errbuf, errlen);
    if (!res)
        return GW_EINTERNAL;
    PQclear(res);
    snprintf(seq_txt, sizeof seq_txt, "%" PRId64, seq);
    snprintf(at_txt, sizeof at_txt, "%" PRId64, at);
    const char *cv[6] = {GW_AUDIT_CTL_CHAIN, seq_txt, (const char *)head, at_txt, key_id,
                         (const char *)sig};
    const int cl[6] = {0, 0, GW_AUDIT_HASH_LEN, 0, 0, (int)siglen};
    const int cf[6] = {0, 0, 1, 0, 0, 1};
    res = run(a,
              "INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, signature) "
              "VALUES ($1, $2, $3, $4, $5, $6)",
              6, cv, cl, cf, errbuf, errlen);
    if (!res)
        return GW_EINTERNAL;
    PQclear(res);
    return 0;
}

/* Runs sql with text results (GW_AUDIT_RECORD_COLS and checkpoints are read as text). */
static PGresult *run_text(struct gw_admin *a, const char *sql, int n, const char *const *v,
                          char *errbuf, size_t errlen)
{
    PGresult *res = PQexecParams(a->pg, sql, n, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        gw_admin_refused(res, a, errbuf, errlen);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* Whether key signed a checkpoint over the head h of chain ctl (*own): then a run of waygatectl
 * wrote it (each keyed run signs its record in the record's transaction). Returns 0 or
 * GW_EINTERNAL (the query failed). */
static int own_head(struct gw_admin *a, const struct gw_sign_key *key, const struct gw_audit_row *h,
                    bool *own, char *errbuf, size_t errlen)
{
    uint8_t pub[GW_SIGN_PUB_MAX];
    char key_id[65], seq_txt[24];
    size_t publen = 0;
    PGresult *res;

    *own = false;
    if (key == NULL || gw_sign_public(key, pub, &publen) != 0 ||
        gw_audit_key_id(pub, publen, key_id) != 0)
        return 0;
    snprintf(seq_txt, sizeof seq_txt, "%" PRId64, h->link.seq);
    const char *v[3] = {GW_AUDIT_CTL_CHAIN, key_id, seq_txt};
    res = run_text(a,
                   "SELECT seq, encode(head_hash, 'hex'), at_us, key_id, encode(signature, "
                   "'hex') FROM audit_checkpoint WHERE chain = $1 AND key_id = $2 AND seq = $3",
                   3, v, errbuf, errlen);
    if (res == NULL)
        return GW_EINTERNAL;
    *own = gw_audit_head_signed(res, GW_AUDIT_CTL_CHAIN, h, pub, publen);
    PQclear(res);
    return 0;
}

/* Inserts r at l (chain ctl, seq, at_us and prev_hash set) and gives its hash. */
static int insert(struct gw_admin *a, const struct gw_audit_rec *r, const struct gw_audit_link *l,
                  uint8_t hash[GW_AUDIT_HASH_LEN], char *errbuf, size_t errlen)
{
    char seq_txt[24], at_txt[24], count_txt[24];
    PGresult *res;

    if (gw_audit_rec_hash(r, l, hash) != 0) {
        snprintf(errbuf, errlen, "audit: hashing failed");
        return GW_EINTERNAL;
    }
    snprintf(seq_txt, sizeof seq_txt, "%" PRId64, l->seq);
    snprintf(at_txt, sizeof at_txt, "%" PRId64, l->at_us);
    snprintf(count_txt, sizeof count_txt, "%" PRId64, r->count);
    const char *v[19] = {GW_AUDIT_CTL_CHAIN,
                         seq_txt,
                         at_txt,
                         r->actor,
                         r->role,
                         r->peer,
                         r->cert,
                         r->branch,
                         r->action,
                         r->object,
                         r->count >= 0 ? count_txt : NULL,
                         r->purpose,
                         r->legal_basis,
                         r->approval,
                         r->outcome,
                         r->detail,
                         r->confidential ? "t" : "f",
                         (const char *)l->prev_hash,
                         (const char *)hash};
    int len[19] = {0}, fmt[19] = {0};
    len[17] = len[18] = GW_AUDIT_HASH_LEN;
    fmt[17] = fmt[18] = 1;
    res = run(a,
              "INSERT INTO audit_record (chain, seq, at_us, actor, role, peer, cert, branch, "
              "action, object, count, purpose, legal_basis, approval, outcome, detail, "
              "confidential, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
              "$11, $12, $13, $14, $15, $16, $17, $18, $19)",
              19, v, len, fmt, errbuf, errlen);
    if (!res)
        return GW_EINTERNAL;
    PQclear(res);
    return 0;
}

/* The head at planted failed its check (why): as the gateway does (audit.c, queue_break), the
 * record after it, audit.break (object its seq, detail why), starts a new segment linked to
 * nothing, with a critical audit_head_rejected incident; l becomes the link after the break. */
static int start_segment(struct gw_admin *a, int64_t planted, const char *why,
                         struct gw_audit_link *l, char *errbuf, size_t errlen)
{
    char object[48], detail[256];
    uint8_t hash[GW_AUDIT_HASH_LEN];
    PGresult *res;
    int rc;

    struct gw_audit_rec r;

    gw_audit_break_rec(GW_AUDIT_CTL_CHAIN, planted, why, "waygatectl", object, detail, &r);
    memset(l->prev_hash, 0, GW_AUDIT_HASH_LEN);
    l->seq = planted + 1;
    rc = insert(a, &r, l, hash, errbuf, errlen);
    if (rc != 0)
        return rc;
    const char *v[2] = {"waygatectl", detail};
    res = run(a, "SELECT cli_record_incident('critical', 'audit_head_rejected', $1, NULL, $2)", 2,
              v, NULL, NULL, errbuf, errlen);
    if (!res)
        return GW_EINTERNAL;
    PQclear(res);
    fprintf(stderr, "waygatectl: %s (audit.break, incident audit_head_rejected)\n", detail);
    l->seq = planted + 2;
    memcpy(l->prev_hash, hash, GW_AUDIT_HASH_LEN);
    return 0;
}

static int append(struct gw_admin *a, const struct gw_audit_rec *r, const struct gw_sign_key *key,
                  int64_t *seq_out, char *errbuf, size_t errlen)
{
    const char *cv[1] = {GW_AUDIT_CTL_CHAIN};
    struct gw_audit_link l = {.chain = GW_AUDIT_CTL_CHAIN, .seq = 1};
    struct gw_audit_row h;
    uint8_t hash[GW_AUDIT_HASH_LEN];
    const char *why = NULL;
    int64_t last_at = 0, planted = 0;
    PGresult *res;

    res = run(a, "SELECT id FROM audit_chain WHERE id = $1 FOR UPDATE", 1, cv, NULL, NULL, errbuf,
              errlen);
    if (!res)
        return GW_EINTERNAL;
    if (PQntuples(res) != 1) {
        PQclear(res);
        snprintf(errbuf, errlen, "audit: chain 'ctl' missing (run waygatectl migrate)");
        return GW_EINTERNAL;
    }
    PQclear(res);
    /* the head and the record before it, whole: a head no keyed run signed is checked */
    res = run_text(a,
                   "SELECT " GW_AUDIT_RECORD_COLS " FROM audit_record WHERE chain = $1 ORDER BY "
                   "seq DESC LIMIT 2",
                   1, cv, errbuf, errlen);
    if (!res)
        return GW_EINTERNAL;
    if (PQntuples(res) > 0) {
        bool own = false;
        memset(&h, 0, sizeof h);
        why = gw_audit_head_fault(res, &h);
        if (why != NULL && own_head(a, key, &h, &own, errbuf, errlen) != 0) {
            PQclear(res);
            return GW_EINTERNAL;
        }
        if (own)
            why = NULL;
        if (why == NULL) {
            l.seq = h.link.seq + 1;
            memcpy(l.prev_hash, h.hash, GW_AUDIT_HASH_LEN);
            last_at = h.link.at_us;
        } else {
            planted = strtoll(PQgetvalue(res, 0, 1), NULL, 10); /* its time is not taken */
        }
    }
    PQclear(res);
    l.at_us = gw_clock_real_us() > last_at ? gw_clock_real_us() : last_at;
    if (why != NULL && start_segment(a, planted, why, &l, errbuf, errlen) != 0)
        return GW_EINTERNAL;
    if (insert(a, r, &l, hash, errbuf, errlen) != 0)
        return GW_EINTERNAL;
    if (key && checkpoint(a, key, l.seq, hash, l.at_us, errbuf, errlen) != 0)
        return GW_EINTERNAL;
    if (seq_out)
        *seq_out = l.seq;
    return 0;
}

int gw_admin_audit(struct gw_admin *a, const struct gw_audit_rec *r, const struct gw_sign_key *key,
                   int64_t *seq, char *errbuf, size_t errlen)
{
    bool own = PQtransactionStatus(a->pg) == PQTRANS_IDLE;
    int rc;

    if (gw_audit_rec_check(r) != 0) {
        snprintf(errbuf, errlen, "audit: record incomplete or malformed");
        return GW_EINVAL;
    }
    if (own && gw_admin_command(a, "BEGIN", errbuf, errlen) != 0)
        return GW_EINTERNAL;
    rc = append(a, r, key, seq, errbuf, errlen);
    if (own) {
        if (rc == 0)
            rc = gw_admin_command(a, "COMMIT", errbuf, errlen);
        else
            (void)gw_admin_command(a, "ROLLBACK", errbuf + strlen(errbuf), errlen - strlen(errbuf));
    }
    return rc;
}
