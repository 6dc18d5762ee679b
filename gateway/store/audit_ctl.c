/* audit_ctl.c: waygatectl's appends to the audit chain 'ctl' (audit_ctl.h). */
#include "audit_ctl.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

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

static int append(struct gw_admin *a, const struct gw_audit_rec *r, const struct gw_sign_key *key,
                  int64_t *seq_out, char *errbuf, size_t errlen)
{
    const char *cv[1] = {GW_AUDIT_CTL_CHAIN};
    struct gw_audit_link l = {.chain = GW_AUDIT_CTL_CHAIN, .seq = 1};
    uint8_t hash[GW_AUDIT_HASH_LEN];
    char seq_txt[24], at_txt[24], count_txt[24];
    int64_t last_at = 0;
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
    res = run(a,
              "SELECT seq, hash, at_us FROM audit_record WHERE chain = $1 ORDER BY seq DESC "
              "LIMIT 1",
              1, cv, NULL, NULL, errbuf, errlen);
    if (!res)
        return GW_EINTERNAL;
    if (PQntuples(res) == 1 && PQgetlength(res, 0, 1) == GW_AUDIT_HASH_LEN) {
        l.seq = gw_pq_int(res, 0, 0, 8) + 1;
        memcpy(l.prev_hash, PQgetvalue(res, 0, 1), GW_AUDIT_HASH_LEN);
        last_at = gw_pq_int(res, 0, 2, 8);
    }
    PQclear(res);
    l.at_us = gw_clock_real_us() > last_at ? gw_clock_real_us() : last_at;
    if (gw_audit_rec_hash(r, &l, hash) != 0) {
        snprintf(errbuf, errlen, "audit: hashing failed");
        return GW_EINTERNAL;
    }
    snprintf(seq_txt, sizeof seq_txt, "%" PRId64, l.seq);
    snprintf(at_txt, sizeof at_txt, "%" PRId64, l.at_us);
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
                         (const char *)l.prev_hash,
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
