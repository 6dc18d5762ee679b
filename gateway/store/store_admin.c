/* store_admin.c: waygatectl's SQL on blocking libpq (never used by the daemon): segments, KEK
 * counts and data-key re-wrapping, the suspicious-customer register. Invariants: every statement
 * is parameterised; a re-wrap batch commits whole or not at all, and its key buffer is wiped. */
#include "store_admin.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "conninfo.h"
#include "crypto.h"
#include "db.h"
#include "kek_check.h"
#include "kek_wrap.h"
#include "pq_msg.h"
#include "store_admin_int.h"

#define OID_INT4 23
#define OID_BYTEA 17
#define OID_UUID 2950
#define STR_(x) #x
#define STR(x) STR_(x)

/* A failed statement: its server message (it may quote a parameter, never a field value). */
int gw_admin_refused(const PGresult *res, const struct gw_admin *a, char *errbuf, size_t errlen)
{
    return gw_pq_refused(a->pg, res, errbuf, errlen);
}

int gw_admin_connect(const char *conninfo, struct gw_admin **out, char *errbuf, size_t errlen)
{
    static const char *const kw[] = {"dbname", "application_name", NULL};
    const char *val[] = {conninfo, "waygatectl", NULL};
    struct gw_admin *a;
    PGresult *res;

    *out = NULL;
    if (conninfo == NULL || conninfo[0] == '\0') {
        gw_pq_msg(errbuf, errlen, "no database connection string given");
        return GW_EINVAL;
    }
    if (gw_conninfo_check(conninfo) == GW_CONNINFO_PASSWORD) { /* the CLI said which option */
        gw_pq_msg(errbuf, errlen,
                  "the connection string must not contain a password: use a "
                  "passfile (passfile=, PGPASSFILE or ~/.pgpass)");
        return GW_EINVAL;
    }
    a = gw_calloc(1, sizeof(*a));
    if (a == NULL) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        return GW_ENOMEM;
    }
    a->pg = PQconnectdbParams(kw, val, 1);
    if (a->pg == NULL) {
        gw_free(a);
        gw_pq_msg(errbuf, errlen, "cannot connect to the database: out of memory");
        return GW_ENOMEM;
    }
    if (PQstatus(a->pg) != CONNECTION_OK) {
        gw_pq_msg(errbuf, errlen, "cannot connect to the database: %s", PQerrorMessage(a->pg));
        gw_admin_free(a);
        return GW_EUNAVAIL;
    }
    res = PQexec(a->pg, GW_DB_SESSION_SQL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        gw_pq_msg(errbuf, errlen, "cannot set READ COMMITTED: %s", PQresultErrorMessage(res));
        PQclear(res);
        gw_admin_free(a);
        return GW_EUNAVAIL;
    }
    PQclear(res);
    *out = a;
    return 0;
}

void gw_admin_free(struct gw_admin *a)
{
    if (a == NULL)
        return;
    PQfinish(a->pg);
    gw_free(a);
}

/* ---- segments ---- */

int gw_admin_segment_issue(struct gw_admin *a, const char *branch, const char *prefix,
                           long long from, long long to, const char *by, long long *id,
                           char *errbuf, size_t errlen)
{
    char from_txt[24], to_txt[24];
    const char *values[5] = {branch, prefix, from_txt, to_txt, by};
    const char *state;
    PGresult *res;
    int rc = 0;

    snprintf(from_txt, sizeof(from_txt), "%lld", from);
    snprintf(to_txt, sizeof(to_txt), "%lld", to);
    res = PQexecParams(a->pg,
                       "INSERT INTO segment (branch, prefix, range_from, range_to, issued_by) "
                       "VALUES ($1, $2, $3::bigint, $4::bigint, $5) RETURNING id",
                       5, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "23P01") == 0) {
            gw_pq_msg(errbuf, errlen, "overlaps a segment already issued");
            rc = GW_EEXIST;
        } else {
            rc = gw_admin_refused(res, a, errbuf, errlen);
        }
        goto out;
    }
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
out:
    PQclear(res);
    return rc;
}

int gw_admin_segment_list(struct gw_admin *a, const char *branch, gw_admin_segment_cb cb, void *arg,
                          char *errbuf, size_t errlen)
{
    const char *values[1] = {branch};
    struct gw_admin_segment s;
    PGresult *res;
    int i, rc = 0;

    res = PQexecParams(a->pg,
                       "SELECT id, branch, prefix, range_from, range_to, issued_by, " UTC_TEXT(
                           "issued_at") " FROM segment WHERE $1::text IS NULL OR branch = $1 "
                                        "ORDER BY prefix, range_from",
                       1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    for (i = 0; i < PQntuples(res); i++) {
        s.id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        s.branch = PQgetvalue(res, i, 1);
        s.prefix = PQgetvalue(res, i, 2);
        s.range_from = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        s.range_to = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        s.issued_by = PQgetvalue(res, i, 5);
        s.issued_at = PQgetvalue(res, i, 6);
        cb(arg, &s);
    }
out:
    PQclear(res);
    return rc;
}

/* ---- KEK versions ---- */

int gw_admin_kek_counts(struct gw_admin *a, struct gw_admin_kek_count **out, size_t *n,
                        char *errbuf, size_t errlen)
{
    struct gw_admin_kek_count *v = NULL;
    PGresult *res;
    int i, rows, rc = 0;

    *out = NULL;
    *n = 0;
    res = PQexec(a->pg, "SELECT get_byte(dek_wrapped, 1), kek_version, count(*) FROM waybill "
                        "GROUP BY 1, 2 ORDER BY 1, 2");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    rows = PQntuples(res);
    if (rows > 0 && (v = gw_calloc((size_t)rows, sizeof(*v))) == NULL) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        rc = GW_ENOMEM;
        goto out;
    }
    for (i = 0; i < rows; i++) {
        v[i].suite = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
        v[i].version = (uint32_t)strtoul(PQgetvalue(res, i, 1), NULL, 10);
        v[i].records = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    }
    *out = v;
    *n = (size_t)rows;
out:
    PQclear(res);
    return rc;
}

int gw_admin_count_kek(struct gw_admin *a, int suite, uint32_t version, bool equal, long long *n,
                       char *errbuf, size_t errlen)
{
    char vs[16], ss[16];
    const char *params[2] = {vs, ss};
    PGresult *res;
    int rc = 0;

    snprintf(vs, sizeof(vs), "%" PRIu32, version);
    snprintf(ss, sizeof(ss), "%d", suite);
    res = PQexecParams(a->pg,
                       equal ? "SELECT count(*) FROM waybill WHERE kek_version = $1::integer "
                               "AND get_byte(dek_wrapped, 1) = $2::integer"
                             : "SELECT count(*) FROM waybill WHERE kek_version <> $1::integer "
                               "AND get_byte(dek_wrapped, 1) = $2::integer",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return rc;
}

int gw_admin_kek_retire(struct gw_admin *a, int suite, uint32_t version, const char *by,
                        long long *n, char *errbuf, size_t errlen)
{
    char vs[16], ss[16];
    const char *params[3] = {ss, vs, by};
    const char *state;
    PGresult *res;
    int rc = 0;

    snprintf(vs, sizeof(vs), "%" PRIu32, version);
    snprintf(ss, sizeof(ss), "%d", suite);
    res = PQexecParams(a->pg, "SELECT kek_retire($1::integer, $2::integer, $3::text)", 3, NULL,
                       params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "55P03") == 0) { /* lock_not_available */
            gw_pq_msg(errbuf, errlen,
                      "table waybill could not be locked within 5 s (a rewrap, migrate-suite or "
                      "another long transaction is writing it)");
            rc = GW_EUNAVAIL;
        } else if (state != NULL && strcmp(state, "42883") == 0) { /* undefined_function */
            gw_pq_msg(errbuf, errlen,
                      "the database has no kek_retire (sql/033_kek_retired.sql): run "
                      "`waygatectl migrate` first");
            rc = GW_EPRECOND;
        } else {
            rc = gw_admin_refused(res, a, errbuf, errlen);
        }
    } else {
        *n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return rc;
}

/* A statement on kek_version refused: GW_EPRECOND when the schema predates it (class 42: no such
 * table or function), else the server's message. */
static int kek_version_refused(const PGresult *res, struct gw_admin *a, char *errbuf, size_t errlen)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "42883") == 0)) {
        gw_pq_msg(errbuf, errlen,
                  "the database has no kek_version (sql/036_kek_version.sql): run `waygatectl "
                  "migrate` first");
        return GW_EPRECOND;
    }
    return gw_admin_refused(res, a, errbuf, errlen);
}

int gw_admin_kek_check(struct gw_admin *a, const struct gw_keyring_check *c, size_t n,
                       const char *by, struct gw_kek_check_outcome *o, char *errbuf, size_t errlen)
{
    struct gw_kek_check_params p;
    PGresult *res;
    int rc;

    if (gw_kek_check_params(c, n, &p) != 0) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        return GW_ENOMEM;
    }
    const char *params[4] = {p.suites, p.versions, p.checks, by};
    res = PQexecParams(a->pg, by != NULL ? GW_KEK_MEET_SQL : GW_KEK_COMPARE_SQL, by != NULL ? 4 : 3,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = kek_version_refused(res, a, errbuf, errlen);
    } else {
        rc = gw_kek_check_read(res, n, o);
        if (rc != 0)
            gw_pq_msg(errbuf, errlen, "unexpected rows from table kek_version");
    }
    PQclear(res);
    gw_kek_check_params_free(&p);
    return rc;
}

int gw_admin_kek_newest(struct gw_admin *a, int suite, uint32_t *v, char *errbuf, size_t errlen)
{
    char ss[16];
    const char *params[1] = {ss};
    PGresult *res;
    int rc = 0;

    snprintf(ss, sizeof(ss), "%d", suite);
    res = PQexecParams(
        a->pg, "SELECT coalesce(max(version), 0) FROM kek_version WHERE suite = $1::integer", 1,
        NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = kek_version_refused(res, a, errbuf, errlen);
    else
        *v = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return rc;
}

int gw_admin_command(struct gw_admin *a, const char *sql, char *errbuf, size_t errlen)
{
    PGresult *res = PQexec(a->pg, sql);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    PQclear(res);
    return rc;
}

/* Writes one re-wrapped key; *updated is 1 when the row still had its old version. */
static int rewrap_write(struct gw_admin *a, const uint8_t *id, uint32_t old, uint32_t target,
                        const uint8_t *wrapped, int *updated, char *errbuf, size_t errlen)
{
    uint32_t nv = htonl(target), ov = htonl(old);
    const char *up[4] = {(const char *)wrapped, (const char *)&nv, (const char *)id,
                         (const char *)&ov};
    static const int ul[4] = {GW_CRYPTO_WRAPPED_DEK_LEN, 4, 16, 4}, uf[4] = {1, 1, 1, 1};
    static const Oid ut[4] = {OID_BYTEA, OID_INT4, OID_UUID, OID_INT4};
    PGresult *res;
    int rc = 0;

    res = PQexecParams(a->pg,
                       "UPDATE waybill SET dek_wrapped = $1, kek_version = $2 "
                       "WHERE id = $3 AND kek_version = $4",
                       4, ut, up, ul, uf, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *updated = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return rc;
}

int gw_admin_rewrap_batch(struct gw_admin *a, struct gw_admin_rewrap *b, gw_admin_rewrap_fn fn,
                          void *arg, char *errbuf, size_t errlen)
{
    char vs[16], ls[24], ss[16];
    const char *params[4] = {vs, ls, ss, (const char *)b->cursor};
    static const int lens[4] = {0, 0, 0, 16}, fmts[4] = {0, 0, 0, 1};
    static const Oid types[4] = {OID_INT4, OID_INT4, OID_INT4, OID_UUID};
    uint8_t wrapped[GW_CRYPTO_WRAPPED_DEK_LEN];
    long updated = 0, failed = 0;
    PGresult *res = NULL;
    int i, n, one, rc;

    b->seen = b->updated = b->failed = 0;
    snprintf(vs, sizeof(vs), "%" PRIu32, b->target);
    snprintf(ls, sizeof(ls), "%ld", b->limit);
    snprintf(ss, sizeof(ss), "%d", b->suite);
    rc = gw_admin_command(a, "BEGIN", errbuf, errlen);
    if (rc != 0)
        return rc;
    /* FOR NO KEY UPDATE: the batch changes dek_wrapped and kek_version only, no column of a
     * unique index, so the foreign-key checks (FOR KEY SHARE) of a RecordScan's event or an
     * outbox row naming a held record go on while the batch runs; FOR UPDATE held them for the
     * whole batch */
    res = PQexecParams(a->pg,
                       b->have_cursor
                           ? "SELECT id, kek_version, dek_wrapped FROM waybill WHERE "
                             "kek_version <> $1 AND get_byte(dek_wrapped, 1) = $3 AND id > $4 "
                             "ORDER BY id LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
                           : "SELECT id, kek_version, dek_wrapped FROM waybill WHERE "
                             "kek_version <> $1 AND get_byte(dek_wrapped, 1) = $3 "
                             "ORDER BY id LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED",
                       b->have_cursor ? 4 : 3, types, params, lens, fmts, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto fail;
    }
    n = PQntuples(res);
    /* a wrap a record, leased for exactly the records taken, before the first wrap, on the lease
     * connection (sql/050): committed even if the batch then rolls back; none when nothing was
     * taken. Short of them (the version's limit): the batch is refused with the database's words */
    if (n > 0) {
        rc = gw_admin_wrap_cover(b->lease, b->suite, b->target, (uint64_t)n, errbuf, errlen);
        if (rc != 0)
            goto fail;
    }
    for (i = 0; i < n; i++) {
        const uint8_t *id = (const uint8_t *)PQgetvalue(res, i, 0);
        const uint8_t *vb = (const uint8_t *)PQgetvalue(res, i, 1);
        uint32_t old;

        if (PQgetlength(res, i, 0) != 16 || PQgetlength(res, i, 1) != 4) {
            gw_pq_msg(errbuf, errlen, "unexpected column types in table waybill");
            rc = GW_EINTERNAL;
            goto fail;
        }
        memcpy(b->cursor, id, 16);
        b->have_cursor = true;
        old = ((uint32_t)vb[0] << 24) | ((uint32_t)vb[1] << 16) | ((uint32_t)vb[2] << 8) | vb[3];
        if (fn(arg, id, old, (const uint8_t *)PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2),
               wrapped) != 0) {
            failed++;
            continue;
        }
        one = 0;
        rc = rewrap_write(a, id, old, b->target, wrapped, &one, errbuf, errlen);
        if (rc != 0)
            goto fail;
        updated += one;
    }
    PQclear(res);
    res = NULL;
    rc = gw_admin_command(a, "COMMIT", errbuf, errlen);
    if (rc != 0)
        goto fail;
    b->seen = n;
    b->updated = updated;
    b->failed = failed;
    OPENSSL_cleanse(wrapped, sizeof(wrapped));
    return 0;
fail:
    PQclear(res);
    res = PQexec(a->pg, "ROLLBACK");
    PQclear(res);
    OPENSSL_cleanse(wrapped, sizeof(wrapped));
    return rc;
}

/* ---- the suspicious-customer register ---- */

int gw_admin_suspicious_list(struct gw_admin *a, long limit, gw_admin_suspect_cb cb, void *arg,
                             char *errbuf, size_t errlen)
{
    char ls[24];
    const char *values[1] = {limit > 0 ? ls : NULL};
    struct gw_admin_suspect s;
    PGresult *res;
    int i, rc = 0;

    snprintf(ls, sizeof(ls), "%ld", limit);
    res = PQexecParams(
        a->pg,
        "SELECT substr(encode(o.phone_bidx, 'hex'), 1, " STR(
            GW_ADMIN_BIDX_HEX_SHOWN) "), o.senders, " UTC_TEXT("o.flagged_at") ", "
                                                                               "string_agg(s.first_"
                                                                               "record::text, ',' "
                                                                               "ORDER BY "
                                                                               "s.first_seen, "
                                                                               "s.first_record) "
                                                                               "FROM phone_owner o "
                                                                               "JOIN phone_sender "
                                                                               "s "
                                                                               "ON s.phone_bidx = "
                                                                               "o.phone_bidx "
                                                                               "WHERE o.suspicious "
                                                                               "GROUP BY "
                                                                               "o.phone_bidx, "
                                                                               "o.senders, "
                                                                               "o.flagged_at "
                                                                               "ORDER BY "
                                                                               "o.flagged_at DESC, "
                                                                               "o.phone_bidx "
                                                                               "LIMIT $1::bigint",
        1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    for (i = 0; i < PQntuples(res); i++) {
        s.phone_bidx = PQgetvalue(res, i, 0);
        s.senders = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        s.flagged_at = PQgetvalue(res, i, 2);
        s.records = PQgetvalue(res, i, 3);
        cb(arg, &s);
    }
out:
    PQclear(res);
    return rc;
}

PGconn *gw_admin_conn(struct gw_admin *a)
{
    return a->pg;
}
