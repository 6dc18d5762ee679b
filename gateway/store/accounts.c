/* accounts.c: the SQL of principals, accounts, sessions and the administrative record
 * (accounts.h); reads go to the pool, every write through the audit writer with its record. Results
 * are read as text (bytea in hex); binary values go in as binary parameters. Invariants: a request
 * struct is freed exactly once, after its callback or at cancel; a statement whose effect depends
 * on an earlier one in the same request says so in its WHERE clause, and where the audit record
 * depends on it a guard fails the whole transaction, so that one round trip never commits half an
 * outcome nor a record of what did not happen. */
#include "accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts_int.h"
#include "alloc.h"
#include "audit.h"
#include "db.h"
#include "log.h"
#include "pq_msg.h"

#define ADMIN3 "('system_admin', 'security_admin', 'compliance_auditor')"

/* --- statements --- */

static const char *const log_sql =
    "INSERT INTO admin_log (actor, role, cert, peer, via, action, object, outcome, detail) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

static const char *const cert_sql =
    "SELECT id, name, role, coalesce(branch, ''), admin FROM principal "
    "WHERE fingerprint = $1 AND disabled_at IS NULL";

static const char *const sess_sql =
    "SELECT a.id, a.name, a.role, coalesce(a.branch, ''), a.must_change OR ($2::int > 0 AND "
    "a.pw_set_at < now() - make_interval(days => $2::int)) FROM session s JOIN account a ON "
    "a.id = s.account_id WHERE s.token_hash = $1 AND s.expires_at > now() AND "
    "a.disabled_at IS NULL";

static const char *const stamp_sql =
    "UPDATE account SET last_used_at = now() WHERE id = (SELECT account_id FROM session WHERE "
    "token_hash = $1 AND expires_at > now()) AND disabled_at IS NULL AND (last_used_at IS NULL "
    "OR last_used_at < now() - interval '1 minute')";

/* inactive ($3 days, 0: never): unused that long, which the sweep disables (Art. 38) when it
 * next runs; a login before then must not revive it. */
static const char *const login_read_sql =
    "SELECT id, role, coalesce(branch, ''), pw_hash, pw_salt, pw_params, must_change OR "
    "($2::int > 0 AND pw_set_at < now() - make_interval(days => $2::int)), "
    "coalesce(locked_until > now(), false), disabled_at IS NOT NULL, $3::int > 0 AND "
    "coalesce(last_used_at, created_at) < now() - make_interval(days => $3::int) "
    "FROM account WHERE name = $1";

/* The login's effect only while the account is as the login read it: enabled, not locked, and
 * its password the one the login verified ($2: the hash read), so that a login in flight when
 * the password changed (its session would outlive the change) issues nothing. */
static const char *const login_ok_sql =
    "UPDATE account SET failed_count = 0, locked_until = NULL, last_used_at = now() "
    "WHERE id = $1::bigint AND pw_hash = $2::bytea AND disabled_at IS NULL AND "
    "NOT coalesce(locked_until > now(), false)";

/* After the session: the same password hashed under other parameters, while the account's hash
 * is still the one the login verified ($5). */
static const char *const rehash_sql =
    "UPDATE account SET pw_hash = $2::bytea, pw_salt = $3::bytea, pw_params = $4::text "
    "WHERE id = $1::bigint AND pw_hash = $5::bytea";

static const char *const session_insert_sql =
    "INSERT INTO session (token_hash, account_id, expires_at, peer, cert, limited) "
    "SELECT $1::bytea, id, now() + make_interval(secs => $3::int), $4::text, $5::text, "
    "$6::boolean FROM account WHERE id = $2::bigint AND pw_hash = $7::bytea AND disabled_at IS "
    "NULL AND NOT coalesce(locked_until > now(), false) "
    "RETURNING extract(epoch FROM expires_at)::bigint";

/* After the new session (token $2) of account $1: the account's expired sessions, and its live
 * ones past the newest $3 others (by issue time), end. */
static const char *const session_cap_sql =
    "DELETE FROM session WHERE account_id = $1::bigint AND token_hash <> $2::bytea AND "
    "(expires_at <= now() OR token_hash IN (SELECT token_hash FROM session WHERE account_id = "
    "$1::bigint AND token_hash <> $2::bytea AND expires_at > now() ORDER BY issued_at DESC, "
    "token_hash DESC OFFSET $3::int))";

/* Guards: "SELECT 1 / <count or condition>" fails with division_by_zero (22012) when what the
 * entry's record says did not happen, so that nothing of the entry commits. */
static const char *const session_guard_sql =
    "SELECT 1 / count(*) FROM session WHERE token_hash = $1::bytea";

/* One failed password check counted ($2: failures that lock, $3: minutes), on the account the
 * WHERE clause that follows names; RETURNING: whether this one locked it. */
#define FAIL_COUNT_SQL                                                                             \
    "UPDATE account SET failed_count = CASE WHEN locked_until IS NULL THEN failed_count + 1 "      \
    "WHEN locked_until <= now() THEN 1 ELSE failed_count END, locked_until = CASE WHEN "           \
    "locked_until > now() THEN locked_until WHEN (CASE WHEN locked_until IS NULL THEN "            \
    "failed_count + 1 ELSE 1 END) >= $2::int THEN now() + make_interval(mins => $3::int) "         \
    "ELSE NULL END "
#define FAIL_LOCKED_SQL "RETURNING locked_until = now() + make_interval(mins => $3::int)"

static const char *const login_fail_sql =
    FAIL_COUNT_SQL "WHERE name = $1 AND disabled_at IS NULL " FAIL_LOCKED_SQL;

static const char *const pw_fail_sql =
    FAIL_COUNT_SQL "WHERE id = $1::bigint AND disabled_at IS NULL " FAIL_LOCKED_SQL;

static const char *const pw_cur_sql =
    "SELECT pw_hash, pw_salt, pw_params, coalesce(locked_until > now(), false) FROM account "
    "WHERE id = $1::bigint AND disabled_at IS NULL";

static const char *const pw_hist_sql =
    "SELECT pw_hash, pw_salt, pw_params FROM account_password_history WHERE "
    "account_id = $1::bigint ORDER BY retired_at DESC LIMIT 5";

/* The change holds only while the account is neither disabled nor locked: the conditions are on
 * the updated row itself, so PostgreSQL checks them again on a version committed while the
 * UPDATE waited (a lock taken by failures written since this call's read: several guesses read
 * before the lock, one of them right, would otherwise change the password past the lockout). */
static const char *const pw_change_sql =
    "WITH old AS (SELECT id, pw_hash, pw_salt, pw_params, pw_set_at FROM account WHERE "
    "id = $1::bigint AND pw_hash = $2::bytea AND disabled_at IS NULL), "
    "upd AS (UPDATE account a SET pw_hash = $3::bytea, pw_salt = $4::bytea, pw_params = $5::text, "
    "pw_set_at = now(), must_change = false, failed_count = 0, locked_until = NULL FROM old "
    "WHERE a.id = old.id AND a.pw_hash = $2::bytea AND a.disabled_at IS NULL AND "
    "NOT coalesce(a.locked_until > now(), false) RETURNING a.pw_set_at), "
    "hist AS (INSERT INTO account_password_history (account_id, pw_hash, pw_salt, pw_params, "
    "set_at) SELECT id, pw_hash, pw_salt, pw_params, pw_set_at FROM old WHERE EXISTS "
    "(SELECT 1 FROM upd)) SELECT extract(epoch FROM pw_set_at)::bigint FROM upd";

static const char *const pw_prune_sql =
    "DELETE FROM account_password_history WHERE account_id = $1::bigint AND ctid NOT IN "
    "(SELECT ctid FROM account_password_history WHERE account_id = $1::bigint "
    "ORDER BY retired_at DESC LIMIT 5)";

/* only when this transaction changed the password (pw_set_at is then its now()) */
static const char *const pw_sessions_sql =
    "DELETE FROM session WHERE account_id = $1::bigint AND token_hash <> $2::bytea AND EXISTS "
    "(SELECT 1 FROM account WHERE id = $1::bigint AND pw_set_at = now())";

/* only when this transaction changed the password (pw_set_at is then its now()) */
static const char *const pw_guard_sql =
    "SELECT 1 / count(*) FROM account WHERE id = $1::bigint AND pw_set_at = now()";

static const char *const create_name_guard_sql =
    "SELECT 1 / (NOT EXISTS (SELECT 1 FROM account WHERE name = $1::text))::int";

/* separation of duties (三员, Art. 34): one person, at most one administrator role */
static const char *const create_sod_guard_sql =
    "SELECT 1 / (NOT ($1::text IN " ADMIN3 " AND EXISTS (SELECT 1 FROM account WHERE "
    "person = $2::text AND role IN " ADMIN3 ")))::int";

static const char *const create_sql =
    "INSERT INTO account (name, person, role, branch, pw_hash, pw_salt, pw_params, must_change, "
    "created_by) VALUES ($1::text, $2::text, $3::text, $4::text, $5::bytea, $6::bytea, $7::text, "
    "true, $8::text) RETURNING extract(epoch FROM created_at)::bigint";

static const char *const account_guard_sql = "SELECT 1 / count(*) FROM account WHERE name = $1";

static const char *const disable_sql =
    "UPDATE account SET disabled_at = now(), disabled_by = $2, disabled_reason = $3 "
    "WHERE name = $1 AND disabled_at IS NULL";

const char *const gw_acct_disable_sessions_sql =
    "DELETE FROM session WHERE account_id IN (SELECT id FROM account WHERE name = $1)";

static const char *const disabled_at_sql =
    "SELECT extract(epoch FROM disabled_at)::bigint FROM account WHERE name = $1";

/* --- helpers --- */

struct gw_acct_req *gw_acct_req_new(enum gw_acct_kind k, void *arg)
{
    struct gw_acct_req *r = gw_calloc(1, sizeof(*r));

    if (r != NULL) {
        r->kind = k;
        r->arg = arg;
        r->cert_stmt = r->sess_stmt = r->guard = -1;
    }
    return r;
}

static int start(struct gw_db *db, struct gw_acct_req *r, const struct gw_db_stmt *st, int n,
                 gw_db_done_cb done, struct gw_acct_req **out)
{
    int err;

    if (out != NULL)
        *out = NULL;
    if (r == NULL)
        return GW_ENOMEM;
    err = gw_db_exec(db, st, n, GW_DB_TXN, done, r, &r->dbreq);
    if (err != 0) {
        gw_free(r);
        return err;
    }
    if (out != NULL)
        *out = r;
    return 0;
}

/* Queues an audited write: the entry's statements st[0..n) and its one record. */
static int start_audit(struct gw_audit *au, struct gw_acct_req *r, const struct gw_db_stmt *st,
                       int n, const struct gw_audit_rec *rec, gw_audit_done_cb done,
                       struct gw_acct_req **out)
{
    int err;

    if (out != NULL)
        *out = NULL;
    err = gw_audit_write(au, st, n, rec, 1, done, r, &r->areq);
    if (err != 0) {
        gw_free(r);
        return err;
    }
    if (out != NULL)
        *out = r;
    return 0;
}

bool gw_acct_last_security_admin(int err, const struct gw_db_result *res, int stmt)
{
    return err == GW_EINTERNAL && res != NULL && res->failed_stmt == stmt &&
           res->sqlstate != NULL && strcmp(res->sqlstate, GW_ACCT_SQLSTATE_LAST_SECADMIN) == 0;
}

int gw_acct_fail_err(int err)
{
    return err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL;
}

static const char *val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static bool get_bool(const PGresult *res, int row, int col)
{
    const char *v = val(res, row, col);

    return v != NULL && v[0] == 't';
}

static int64_t get_i64(const PGresult *res, int row, int col)
{
    const char *v = val(res, row, col);

    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

static void get_str(const PGresult *res, int row, int col, char *out, size_t outsz)
{
    const char *v = val(res, row, col);

    snprintf(out, outsz, "%s", v != NULL ? v : "");
}

/* A bytea in text form ("\x" + hex) of exactly n bytes into out; false otherwise. */
static bool get_bytes(const PGresult *res, int row, int col, uint8_t *out, size_t n)
{
    const char *v = val(res, row, col);

    return v != NULL && v[0] == '\\' && v[1] == 'x' && gw_pq_hex(v + 2, out, n);
}

static bool get_pw(const PGresult *res, int row, struct gw_acct_pw *pw)
{
    get_str(res, row, 2, pw->params, sizeof(pw->params));
    return get_bytes(res, row, 0, pw->hash, sizeof(pw->hash)) &&
           get_bytes(res, row, 1, pw->salt, sizeof(pw->salt));
}

/* The nine values of a log row as statement parameters starting at vals[0]. */
static void log_params(const struct gw_acct_log *l, const char **vals)
{
    vals[0] = l->actor;
    vals[1] = l->role;
    vals[2] = l->cert;
    vals[3] = l->peer;
    vals[4] = l->via;
    vals[5] = l->action;
    vals[6] = l->object;
    vals[7] = l->outcome;
    vals[8] = l->detail;
}

static bool log_ok(const struct gw_acct_log *l)
{
    return l != NULL && l->actor != NULL && l->via != NULL && l->action != NULL &&
           l->outcome != NULL;
}

void gw_acct_req_free(struct gw_acct_req *r)
{
    if (r->ext_free != NULL)
        r->ext_free(r->ext);
    gw_free(r);
}

void gw_acct_cancel(struct gw_acct_req *r)
{
    if (r == NULL)
        return;
    if (r->dbreq != NULL)
        gw_db_cancel(r->dbreq);
    if (r->areq != NULL)
        gw_audit_cancel(r->areq);
    gw_acct_req_free(r);
}

/* --- identify --- */

static void identify_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    struct gw_acct_cert cert;
    struct gw_acct_session sess;
    const struct gw_acct_cert *pc = NULL;
    const struct gw_acct_session *ps = NULL;
    const PGresult *pr;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.identify(r->arg, gw_acct_fail_err(err), NULL, NULL);
        gw_free(r);
        return;
    }
    if (r->cert_stmt >= 0 && PQntuples(pr = res->results[r->cert_stmt]) == 1) {
        memset(&cert, 0, sizeof(cert));
        cert.id = get_i64(pr, 0, 0);
        get_str(pr, 0, 1, cert.name, sizeof(cert.name));
        get_str(pr, 0, 2, cert.role, sizeof(cert.role));
        get_str(pr, 0, 3, cert.branch, sizeof(cert.branch));
        cert.admin = get_bool(pr, 0, 4);
        pc = &cert;
    }
    if (r->sess_stmt >= 0 && PQntuples(pr = res->results[r->sess_stmt]) == 1) {
        memset(&sess, 0, sizeof(sess));
        sess.account_id = get_i64(pr, 0, 0);
        get_str(pr, 0, 1, sess.name, sizeof(sess.name));
        get_str(pr, 0, 2, sess.role, sizeof(sess.role));
        get_str(pr, 0, 3, sess.branch, sizeof(sess.branch));
        sess.must_change = get_bool(pr, 0, 4);
        ps = &sess;
    }
    r->cb.identify(r->arg, 0, pc, ps);
    gw_free(r);
}

int gw_acct_identify(struct gw_db *db, const uint8_t *fpr, const uint8_t *token_hash,
                     uint32_t max_age_days, gw_acct_identify_cb cb, void *arg,
                     struct gw_acct_req **out)
{
    static const int lens1[1] = {GW_ACCT_HASH_LEN}, fmts1[1] = {1};
    static const int lens2[2] = {GW_ACCT_HASH_LEN, 0}, fmts2[2] = {1, 0};
    const char *cvals[1] = {(const char *)fpr};
    const char *svals[2] = {(const char *)token_hash, NULL};
    char days[16];
    struct gw_db_stmt st[3];
    struct gw_acct_req *r;
    int n = 0;

    if (db == NULL || cb == NULL || (fpr == NULL && token_hash == NULL))
        return GW_EINVAL;
    r = gw_acct_req_new(GW_ACCT_K_IDENTIFY, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.identify = cb;
    memset(st, 0, sizeof(st));
    snprintf(days, sizeof(days), "%u", max_age_days);
    svals[1] = days;
    if (fpr != NULL) {
        r->cert_stmt = n;
        st[n++] = (struct gw_db_stmt){
            .sql = cert_sql, .nparams = 1, .values = cvals, .lengths = lens1, .formats = fmts1};
    }
    if (token_hash != NULL) {
        r->sess_stmt = n;
        st[n++] = (struct gw_db_stmt){
            .sql = sess_sql, .nparams = 2, .values = svals, .lengths = lens2, .formats = fmts2};
        st[n++] = (struct gw_db_stmt){
            .sql = stamp_sql, .nparams = 1, .values = svals, .lengths = lens1, .formats = fmts1};
    }
    return start(db, r, st, n, identify_done_cb, out);
}

/* --- login --- */

static void login_read_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    struct gw_acct_login l;
    const PGresult *pr;

    r->dbreq = NULL;
    memset(&l, 0, sizeof(l));
    if (err != 0) {
        r->cb.login(r->arg, gw_acct_fail_err(err), NULL);
        gw_free(r);
        return;
    }
    pr = res->results[0];
    if (PQntuples(pr) == 1) {
        l.found = true;
        l.id = get_i64(pr, 0, 0);
        get_str(pr, 0, 1, l.role, sizeof(l.role));
        get_str(pr, 0, 2, l.branch, sizeof(l.branch));
        get_str(pr, 0, 5, l.params, sizeof(l.params));
        if (!get_bytes(pr, 0, 3, l.hash, sizeof(l.hash)) ||
            !get_bytes(pr, 0, 4, l.salt, sizeof(l.salt))) {
            r->cb.login(r->arg, GW_EINTERNAL, NULL);
            gw_free(r);
            return;
        }
        l.must_change = get_bool(pr, 0, 6);
        l.locked = get_bool(pr, 0, 7);
        l.disabled = get_bool(pr, 0, 8);
        l.inactive = get_bool(pr, 0, 9);
    }
    r->cb.login(r->arg, 0, &l);
    gw_wipe(&l, sizeof(l));
    gw_free(r);
}

int gw_acct_login_read(struct gw_db *db, const char *name, uint32_t max_age_days,
                       uint32_t inactive_days, gw_acct_login_cb cb, void *arg,
                       struct gw_acct_req **out)
{
    char days[16], idle[16];
    const char *vals[3] = {name, days, idle};
    struct gw_db_stmt st = {.sql = login_read_sql, .nparams = 3, .values = vals};
    struct gw_acct_req *r;

    if (db == NULL || name == NULL || cb == NULL)
        return GW_EINVAL;
    snprintf(days, sizeof(days), "%u", max_age_days);
    snprintf(idle, sizeof(idle), "%u", inactive_days);
    r = gw_acct_req_new(GW_ACCT_K_LOGIN, arg);
    if (r != NULL)
        r->cb.login = cb;
    return start(db, r, &st, 1, login_read_done_cb, out);
}

bool gw_acct_guard_failed(int err, const struct gw_db_result *res, int guard)
{
    return err == GW_EINTERNAL && res != NULL && res->failed_stmt == guard &&
           res->sqlstate != NULL && strcmp(res->sqlstate, "22012") == 0;
}

static void login_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    const PGresult *pr;
    bool created = false, locked = false;
    int64_t exp = 0;

    (void)seq;
    r->areq = NULL;
    if (r->guard >= 0 && gw_acct_guard_failed(err, res, r->guard)) {
        /* disabled, locked or its password changed meanwhile: no session, no login.ok record */
        r->cb.login_done(r->arg, 0, false, 0, false);
        gw_free(r);
        return;
    }
    if (err != 0) {
        r->cb.login_done(r->arg, gw_acct_fail_err(err), false, 0, false);
        gw_free(r);
        return;
    }
    if (r->guard >= 0) { /* the ok path: update, session, guard, cap, log */
        pr = res->results[1];
        if (pr != NULL && PQntuples(pr) == 1) {
            created = true;
            exp = get_i64(pr, 0, 0);
        }
    } else if (res->nresults > 0 && (pr = res->results[0]) != NULL && PQntuples(pr) == 1)
        locked = get_bool(pr, 0, 0); /* the failure path: update, log (uncounted: the log's
                                      * INSERT alone, no row) */
    r->cb.login_done(r->arg, 0, created, exp, locked);
    gw_free(r);
}

int gw_acct_login_finish(struct gw_audit *au, const struct gw_acct_login_outcome *o,
                         gw_acct_login_done_cb cb, void *arg, struct gw_acct_req **out)
{
    char id[24], ttl[16], fails[16], mins[16], keep[16];
    const char *okv[2] = {id, (const char *)o->pw_hash};
    static const int oklens[2] = {0, GW_ACCT_HASH_LEN}, okfmts[2] = {0, 1};
    const char *cv[3] = {id, (const char *)o->token_hash, keep};
    static const int clens[3] = {0, GW_ACCT_HASH_LEN, 0}, cfmts[3] = {0, 1, 0};
    const char *sv[7] = {
        (const char *)o->token_hash, id, ttl, o->peer, o->cert, o->limited ? "true" : "false",
        (const char *)o->pw_hash};
    static const int slens[7] = {GW_ACCT_HASH_LEN, 0, 0, 0, 0, 0, GW_ACCT_HASH_LEN};
    static const int sfmts[7] = {1, 0, 0, 0, 0, 0, 1};
    static const int glens[1] = {GW_ACCT_HASH_LEN}, gfmts[1] = {1};
    const char *gv[1] = {(const char *)o->token_hash};
    const char *lv[9];
    const char *fv[3] = {o->name, fails, mins};
    const struct gw_acct_pw *rh = o->ok ? o->rehash : NULL;
    const char *rv[5] = {id, rh != NULL ? (const char *)rh->hash : NULL,
                         rh != NULL ? (const char *)rh->salt : NULL, rh != NULL ? rh->params : NULL,
                         (const char *)o->pw_hash};
    static const int rlens[5] = {0, GW_ACCT_HASH_LEN, GW_ACCT_SALT_LEN, 0, GW_ACCT_HASH_LEN};
    static const int rfmts[5] = {0, 1, 1, 0, 1};
    struct gw_db_stmt st[6];
    struct gw_acct_req *r;
    int n;

    if (au == NULL || o == NULL || cb == NULL || o->name == NULL || !log_ok(&o->log) ||
        (o->ok && (o->token_hash == NULL || o->pw_hash == NULL || o->sessions_max == 0)))
        return GW_EINVAL;
    snprintf(id, sizeof(id), "%lld", (long long)o->id);
    snprintf(ttl, sizeof(ttl), "%u", o->ttl_s);
    snprintf(fails, sizeof(fails), "%u", o->lockout_failures);
    snprintf(mins, sizeof(mins), "%u", o->lockout_minutes);
    snprintf(keep, sizeof(keep), "%u", o->ok ? o->sessions_max - 1 : 0); /* besides the new one */
    log_params(&o->log, lv);
    memset(st, 0, sizeof(st));
    r = gw_acct_req_new(GW_ACCT_K_LOGIN_DONE, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.login_done = cb;
    if (o->ok) {
        st[0] = (struct gw_db_stmt){
            .sql = login_ok_sql, .nparams = 2, .values = okv, .lengths = oklens, .formats = okfmts};
        st[1] = (struct gw_db_stmt){.sql = session_insert_sql,
                                    .nparams = 7,
                                    .values = sv,
                                    .lengths = slens,
                                    .formats = sfmts};
        st[2] = (struct gw_db_stmt){.sql = session_guard_sql,
                                    .nparams = 1,
                                    .values = gv,
                                    .lengths = glens,
                                    .formats = gfmts};
        st[3] = (struct gw_db_stmt){
            .sql = session_cap_sql, .nparams = 3, .values = cv, .lengths = clens, .formats = cfmts};
        n = 4;
        if (rh != NULL)
            st[n++] = (struct gw_db_stmt){
                .sql = rehash_sql, .nparams = 5, .values = rv, .lengths = rlens, .formats = rfmts};
        st[n++] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
        r->guard = 2;
    } else if (o->uncounted) {
        st[0] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
        n = 1;
    } else {
        st[0] = (struct gw_db_stmt){.sql = login_fail_sql, .nparams = 3, .values = fv};
        st[1] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
        n = 2;
    }
    return start_audit(au, r, st, n, &o->rec, login_done_cb, out);
}

/* --- passwords --- */

static void pw_read_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    struct gw_acct_pw cur, hist[GW_ACCT_HISTORY];
    size_t nh = 0;
    const PGresult *pr;
    bool found = false, locked = false;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.pw(r->arg, gw_acct_fail_err(err), NULL, false, NULL, 0);
        gw_free(r);
        return;
    }
    memset(&cur, 0, sizeof(cur));
    memset(hist, 0, sizeof(hist));
    pr = res->results[0];
    if (PQntuples(pr) == 1) {
        if (!get_pw(pr, 0, &cur)) {
            r->cb.pw(r->arg, GW_EINTERNAL, NULL, false, NULL, 0);
            gw_free(r);
            return;
        }
        found = true;
        locked = get_bool(pr, 0, 3);
    }
    pr = res->results[1];
    for (int i = 0; i < PQntuples(pr) && nh < GW_ACCT_HISTORY; i++)
        if (get_pw(pr, i, &hist[nh]))
            nh++;
    r->cb.pw(r->arg, 0, found ? &cur : NULL, locked, hist, nh);
    gw_wipe(&cur, sizeof(cur));
    gw_wipe(hist, sizeof(hist));
    gw_free(r);
}

int gw_acct_pw_read(struct gw_db *db, int64_t account_id, gw_acct_pw_cb cb, void *arg,
                    struct gw_acct_req **out)
{
    char id[24];
    const char *vals[1] = {id};
    struct gw_db_stmt st[2] = {
        {.sql = pw_cur_sql, .nparams = 1, .values = vals},
        {.sql = pw_hist_sql, .nparams = 1, .values = vals},
    };
    struct gw_acct_req *r;

    if (db == NULL || cb == NULL)
        return GW_EINVAL;
    snprintf(id, sizeof(id), "%lld", (long long)account_id);
    r = gw_acct_req_new(GW_ACCT_K_PW, arg);
    if (r != NULL)
        r->cb.pw = cb;
    return start(db, r, st, 2, pw_read_done_cb, out);
}

static void pw_write_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    const PGresult *pr;

    (void)seq;
    r->areq = NULL;
    if (gw_acct_guard_failed(err, res, r->guard)) { /* changed meanwhile: nothing committed */
        r->cb.changed(r->arg, 0, false, 0);
        gw_free(r);
        return;
    }
    if (err != 0) {
        r->cb.changed(r->arg, gw_acct_fail_err(err), false, 0);
        gw_free(r);
        return;
    }
    pr = res->results[0];
    if (pr != NULL && PQntuples(pr) == 1)
        r->cb.changed(r->arg, 0, true, get_i64(pr, 0, 0));
    else
        r->cb.changed(r->arg, 0, false, 0);
    gw_free(r);
}

int gw_acct_pw_write(struct gw_audit *au, const struct gw_acct_pw_change *c, gw_acct_changed_cb cb,
                     void *arg, struct gw_acct_req **out)
{
    char id[24];
    const char *cv[5], *iv[1] = {id}, *sv[2], *lv[9];
    static const int clens[5] = {0, GW_ACCT_HASH_LEN, GW_ACCT_HASH_LEN, GW_ACCT_SALT_LEN, 0};
    static const int cfmts[5] = {0, 1, 1, 1, 0};
    static const int slens[2] = {0, GW_ACCT_HASH_LEN}, sfmts[2] = {0, 1};
    struct gw_db_stmt st[5];
    struct gw_acct_req *r;

    if (au == NULL || c == NULL || cb == NULL || c->old_hash == NULL || c->new_pw == NULL ||
        c->keep_token_hash == NULL || !log_ok(&c->log))
        return GW_EINVAL;
    snprintf(id, sizeof(id), "%lld", (long long)c->account_id);
    cv[0] = id;
    cv[1] = (const char *)c->old_hash;
    cv[2] = (const char *)c->new_pw->hash;
    cv[3] = (const char *)c->new_pw->salt;
    cv[4] = c->new_pw->params;
    sv[0] = id;
    sv[1] = (const char *)c->keep_token_hash;
    log_params(&c->log, lv);
    st[0] = (struct gw_db_stmt){
        .sql = pw_change_sql, .nparams = 5, .values = cv, .lengths = clens, .formats = cfmts};
    st[1] = (struct gw_db_stmt){.sql = pw_guard_sql, .nparams = 1, .values = iv};
    st[2] = (struct gw_db_stmt){.sql = pw_prune_sql, .nparams = 1, .values = iv};
    st[3] = (struct gw_db_stmt){
        .sql = pw_sessions_sql, .nparams = 2, .values = sv, .lengths = slens, .formats = sfmts};
    st[4] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
    r = gw_acct_req_new(GW_ACCT_K_CHANGED, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.changed = cb;
    r->guard = 1;
    return start_audit(au, r, st, 5, &c->rec, pw_write_done_cb, out);
}

static void pw_fail_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    const PGresult *pr;
    bool locked = false;

    (void)seq;
    r->areq = NULL;
    if (err == 0 && res->nresults > 0 && (pr = res->results[0]) != NULL && PQntuples(pr) == 1)
        locked = get_bool(pr, 0, 0);
    r->cb.pw_failed(r->arg, err != 0 ? gw_acct_fail_err(err) : 0, locked);
    gw_free(r);
}

int gw_acct_pw_fail(struct gw_audit *au, const struct gw_acct_pw_fail *f, gw_acct_pw_failed_cb cb,
                    void *arg, struct gw_acct_req **out)
{
    char id[24], fails[16], mins[16];
    const char *fv[3] = {id, fails, mins}, *lv[9];
    struct gw_db_stmt st[2];
    struct gw_acct_req *r;

    if (au == NULL || f == NULL || cb == NULL || !log_ok(&f->log))
        return GW_EINVAL;
    snprintf(id, sizeof(id), "%lld", (long long)f->account_id);
    snprintf(fails, sizeof(fails), "%u", f->lockout_failures);
    snprintf(mins, sizeof(mins), "%u", f->lockout_minutes);
    log_params(&f->log, lv);
    st[0] = (struct gw_db_stmt){.sql = pw_fail_sql, .nparams = 3, .values = fv};
    st[1] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
    r = gw_acct_req_new(GW_ACCT_K_PW_FAILED, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.pw_failed = cb;
    return start_audit(au, r, st, 2, &f->rec, pw_fail_done_cb, out);
}

/* --- create, disable, sweep --- */

static void create_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    const PGresult *pr;

    (void)seq;
    r->areq = NULL;
    if (gw_acct_guard_failed(err, res, 0) || gw_acct_guard_failed(err, res, 1)) {
        r->cb.create(r->arg, 0,
                     res->failed_stmt == 0 ? GW_ACCT_NAME_TAKEN : GW_ACCT_SEPARATION_OF_DUTIES, 0);
        gw_free(r);
        return;
    }
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 2 && res->sqlstate != NULL &&
        strcmp(res->sqlstate, "23505") == 0) {
        /* A concurrent creation won the race; the index names which rule it broke. */
        bool sod = res->errmsg != NULL && strstr(res->errmsg, "account_one_admin_role") != NULL;
        r->cb.create(r->arg, 0, sod ? GW_ACCT_SEPARATION_OF_DUTIES : GW_ACCT_NAME_TAKEN, 0);
        gw_free(r);
        return;
    }
    if (err != 0) {
        r->cb.create(r->arg, gw_acct_fail_err(err), GW_ACCT_CREATED, 0);
        gw_free(r);
        return;
    }
    pr = res->results[2];
    r->cb.create(r->arg, 0, GW_ACCT_CREATED, pr != NULL ? get_i64(pr, 0, 0) : 0);
    gw_free(r);
}

int gw_acct_create(struct gw_audit *au, const struct gw_acct_new *n, gw_acct_create_cb cb,
                   void *arg, struct gw_acct_req **out)
{
    const char *kv[3], *v[8], *lv[9];
    static const int lens[8] = {0, 0, 0, 0, GW_ACCT_HASH_LEN, GW_ACCT_SALT_LEN};
    static const int fmts[8] = {0, 0, 0, 0, 1, 1};
    struct gw_db_stmt st[4];
    struct gw_acct_req *r;

    if (au == NULL || n == NULL || cb == NULL || n->name == NULL || n->person == NULL ||
        n->role == NULL || n->pw == NULL || n->created_by == NULL || !log_ok(&n->log))
        return GW_EINVAL;
    kv[0] = n->name;
    kv[1] = n->role;
    kv[2] = n->person;
    v[0] = n->name;
    v[1] = n->person;
    v[2] = n->role;
    v[3] = n->branch;
    v[4] = (const char *)n->pw->hash;
    v[5] = (const char *)n->pw->salt;
    v[6] = n->pw->params;
    v[7] = n->created_by;
    log_params(&n->log, lv);
    st[0] = (struct gw_db_stmt){.sql = create_name_guard_sql, .nparams = 1, .values = kv};
    st[1] = (struct gw_db_stmt){.sql = create_sod_guard_sql, .nparams = 2, .values = &kv[1]};
    st[2] = (struct gw_db_stmt){
        .sql = create_sql, .nparams = 8, .values = v, .lengths = lens, .formats = fmts};
    st[3] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
    r = gw_acct_req_new(GW_ACCT_K_CREATE, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.create = cb;
    return start_audit(au, r, st, 4, &n->rec, create_done_cb, out);
}

static void disable_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    const PGresult *pr;

    (void)seq;
    r->areq = NULL;
    if (gw_acct_guard_failed(err, res, 0)) { /* no such account */
        r->cb.disabled(r->arg, 0, false, 0);
        gw_free(r);
        return;
    }
    if (gw_acct_last_security_admin(err, res, 1)) {
        r->cb.disabled(r->arg, GW_EPRECOND, true, 0);
        gw_free(r);
        return;
    }
    if (err != 0) {
        r->cb.disabled(r->arg, gw_acct_fail_err(err), false, 0);
        gw_free(r);
        return;
    }
    pr = res->results[3];
    r->cb.disabled(r->arg, 0, true, pr != NULL ? get_i64(pr, 0, 0) : 0);
    gw_free(r);
}

int gw_acct_disable(struct gw_audit *au, const char *name, const char *by, const char *reason,
                    const struct gw_acct_log *log, const struct gw_audit_rec *rec,
                    gw_acct_disabled_cb cb, void *arg, struct gw_acct_req **out)
{
    const char *dv[3] = {name, by, reason}, *nv[1] = {name}, *lv[9];
    struct gw_db_stmt st[5];
    struct gw_acct_req *r;

    if (au == NULL || name == NULL || by == NULL || cb == NULL || !log_ok(log) || rec == NULL)
        return GW_EINVAL;
    log_params(log, lv);
    st[0] = (struct gw_db_stmt){.sql = account_guard_sql, .nparams = 1, .values = nv};
    st[1] = (struct gw_db_stmt){.sql = disable_sql, .nparams = 3, .values = dv};
    st[2] = (struct gw_db_stmt){.sql = gw_acct_disable_sessions_sql, .nparams = 1, .values = nv};
    st[3] = (struct gw_db_stmt){.sql = disabled_at_sql, .nparams = 1, .values = nv};
    st[4] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
    r = gw_acct_req_new(GW_ACCT_K_DISABLE, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.disabled = cb;
    return start_audit(au, r, st, 5, rec, disable_done_cb, out);
}

static void log_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    (void)arg;
    (void)seq;
    (void)res;
    if (err != 0)
        GW_LOG(GW_LOG_ERROR, "accounts", NULL,
               "a refusal's administrative-record row and audit record were not written: %s",
               gw_err_str(err));
}

int gw_acct_log_write_cb(struct gw_audit *au, const struct gw_acct_log *log,
                         const struct gw_audit_rec *rec, gw_audit_done_cb cb, void *arg,
                         struct gw_audit_req **out)
{
    const char *lv[9];
    struct gw_db_stmt st = {.sql = log_sql, .nparams = 9, .values = lv};

    if (out != NULL)
        *out = NULL;
    if (au == NULL || !log_ok(log) || rec == NULL)
        return GW_EINVAL;
    log_params(log, lv);
    if (out == NULL) /* nobody can cancel it: it waits out an outage */
        return gw_audit_write_kept(au, &st, 1, rec, 1, cb != NULL ? cb : log_done_cb, arg);
    return gw_audit_write(au, &st, 1, rec, 1, cb != NULL ? cb : log_done_cb, arg, out);
}

int gw_acct_log_left(const struct gw_acct_log *log, const struct gw_audit_rec *rec,
                     gw_audit_left_cb cb, void *arg)
{
    struct gw_audit_left e = {.nstmts = 1, .nrecs = 1};
    const char *lv[9];

    if (!log_ok(log) || rec == NULL)
        return GW_EINVAL;
    log_params(log, lv);
    e.stmts[0] = (struct gw_db_stmt){.sql = log_sql, .nparams = 9, .values = lv};
    e.recs[0] = *rec;
    return cb(arg, &e);
}

int gw_acct_log_write(struct gw_audit *au, const struct gw_acct_log *log,
                      const struct gw_audit_rec *rec)
{
    return gw_acct_log_write_cb(au, log, rec, NULL, NULL, NULL);
}
