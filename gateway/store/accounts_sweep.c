/* accounts_sweep.c: the inactivity sweep (Art. 38) of accounts.h: one transaction that deletes
 * expired sessions (bounded) and reads the idle accounts, then each account disabled in a
 * transaction of its own through the audit writer, one after another, with its admin_log row and
 * its account.disable_inactive record; a guard leaves an account used since the read alone.
 * Invariant: one entry in flight per sweep; the callback runs once, after the last. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "accounts_int.h"
#include "alloc.h"
#include "audit.h"
#include "db.h"
#include "log.h"

struct sweep {
    struct gw_audit *au;
    size_t n, cur, nok; /* accounts read, the one in flight, those disabled */
    size_t purged;      /* expired sessions deleted */
    int last_err;
    char days[16], reason[64];
    char (*names)[80];
    bool *ok;
};

static void sweep_finish(struct gw_acct_req *r)
{
    struct sweep *sw = ((struct sweep *)r->ext);
    const char **names = NULL;
    size_t k = 0;

    if (sw->nok > 0 && (names = gw_calloc(sw->nok, sizeof(*names))) == NULL) {
        r->cb.swept(r->arg, GW_ENOMEM, NULL, 0, sw->purged);
        return;
    }
    for (size_t i = 0; i < sw->n; i++)
        if (sw->ok[i])
            names[k++] = sw->names[i];
    r->cb.swept(r->arg, k == 0 && sw->n > 0 ? sw->last_err : 0, names, k, sw->purged);
    gw_free(names);
}

static void sweep_free(void *arg)
{
    struct sweep *sw = arg;

    if (sw != NULL) {
        gw_free(sw->names);
        gw_free(sw->ok);
        gw_free(sw);
    }
}

static void sweep_next(struct gw_acct_req *r);

/* One account's transaction ended: the next one, or the end of the sweep. */
static void sweep_one_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    struct sweep *sw = ((struct sweep *)r->ext);

    (void)seq;
    r->areq = NULL;
    if (err == 0)
        sw->ok[sw->cur] = true, sw->nok++;
    else if (gw_acct_last_security_admin(err, res, 0))
        /* sql/037 keeps it enabled; Login still refuses it as unused (api_login.c) */
        GW_LOG(GW_LOG_WARN, "accounts", NULL,
               "inactive-account sweep: account %s is the last enabled security_admin and stays "
               "enabled, though unused past inactive_disable_days (Login refuses it): create "
               "another with waygatectl accounts create",
               sw->names[sw->cur]);
    else if (!gw_acct_guard_failed(err, res, 1)) /* a guard: used meanwhile, left alone */
        sw->last_err = gw_acct_fail_err(err);
    sw->cur++;
    sweep_next(r);
}

static void sweep_next(struct gw_acct_req *r)
{
    static const char *const disable_inactive_sql =
        "UPDATE account SET disabled_at = now(), disabled_by = 'gateway', disabled_reason = $2 "
        "WHERE name = $1 AND disabled_at IS NULL AND coalesce(last_used_at, created_at) < "
        "now() - make_interval(days => $3::int)";
    static const char *const disabled_now_guard_sql =
        "SELECT 1 / count(*) FROM account WHERE name = $1 AND disabled_at = now()";
    static const char *const sweep_log_sql =
        "INSERT INTO admin_log (actor, via, action, object, outcome, detail) VALUES ('gateway', "
        "'gateway', 'DisableInactive', $1, 'ok', $2)";
    struct sweep *sw = ((struct sweep *)r->ext);
    struct gw_audit_rec rec;
    struct gw_db_stmt st[4];
    const char *uv[3], *nv[1], *lv[2];
    int err;

    while (sw->cur < sw->n) {
        const char *name = sw->names[sw->cur];

        uv[0] = name;
        uv[1] = sw->reason;
        uv[2] = sw->days;
        nv[0] = name;
        lv[0] = name;
        lv[1] = sw->reason;
        st[0] = (struct gw_db_stmt){.sql = disable_inactive_sql, .nparams = 3, .values = uv};
        st[1] = (struct gw_db_stmt){.sql = disabled_now_guard_sql, .nparams = 1, .values = nv};
        st[2] =
            (struct gw_db_stmt){.sql = gw_acct_disable_sessions_sql, .nparams = 1, .values = nv};
        st[3] = (struct gw_db_stmt){.sql = sweep_log_sql, .nparams = 2, .values = lv};
        memset(&rec, 0, sizeof(rec));
        rec.actor = "gateway";
        rec.action = "account.disable_inactive";
        rec.object = name;
        rec.count = -1;
        rec.outcome = "ok";
        rec.detail = sw->reason;
        err = gw_audit_write(sw->au, st, 4, &rec, 1, sweep_one_done_cb, r, &r->areq);
        if (err == 0)
            return;
        r->areq = NULL;
        sw->last_err = err;
        sw->cur++;
    }
    sweep_finish(r);
    gw_acct_req_free(r);
}

static void sweep_read_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_acct_req *r = arg;
    struct sweep *sw = ((struct sweep *)r->ext);
    const PGresult *pr;
    int n;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.swept(r->arg, gw_acct_fail_err(err), NULL, 0, 0);
        gw_acct_req_free(r);
        return;
    }
    sw->purged = strtoul(PQcmdTuples(res->results[0]), NULL, 10);
    pr = res->results[1];
    n = PQntuples(pr);
    if (n > GW_ACCT_SWEEP_MAX)
        n = GW_ACCT_SWEEP_MAX;
    if (n > 0 && ((sw->names = gw_calloc((size_t)n, sizeof(*sw->names))) == NULL ||
                  (sw->ok = gw_calloc((size_t)n, sizeof(*sw->ok))) == NULL)) {
        r->cb.swept(r->arg, GW_ENOMEM, NULL, 0, sw->purged);
        gw_acct_req_free(r);
        return;
    }
    for (int i = 0; i < n; i++)
        snprintf(sw->names[i], sizeof(sw->names[i]), "%s", PQgetvalue(pr, i, 0));
    sw->n = (size_t)n;
    sweep_next(r); /* not from inside gw_acct_sweep_inactive: this is the read's callback */
}

int gw_acct_sweep_inactive(struct gw_db *db, struct gw_audit *au, uint32_t days,
                           gw_acct_swept_cb cb, void *arg, struct gw_acct_req **out)
{
    /* the longest expired first: a sweep that stops at the bound leaves the most recent */
    static const char *const purge_sql =
        "DELETE FROM session WHERE token_hash IN (SELECT token_hash FROM session WHERE "
        "expires_at <= now() ORDER BY expires_at LIMIT $1::int)";
    static const char *const candidates_sql =
        "SELECT name FROM account WHERE $1::int > 0 AND disabled_at IS NULL AND "
        "coalesce(last_used_at, created_at) < now() - make_interval(days => $1::int) "
        "ORDER BY name LIMIT $2::int";
    char limit[16], purge_max[16];
    const char *vals[2], *pvals[1] = {purge_max};
    struct gw_db_stmt st[2] = {
        {.sql = purge_sql, .nparams = 1, .values = pvals},
        {.sql = candidates_sql, .nparams = 2, .values = vals},
    };
    struct gw_acct_req *r;
    struct sweep *sw;

    if (db == NULL || au == NULL || cb == NULL)
        return GW_EINVAL;
    r = gw_acct_req_new(GW_ACCT_K_SWEEP, arg);
    sw = gw_calloc(1, sizeof(*sw));
    if (r == NULL || sw == NULL) {
        gw_free(r);
        gw_free(sw);
        return GW_ENOMEM;
    }
    r->cb.swept = cb;
    r->ext = sw;
    r->ext_free = sweep_free;
    sw->au = au;
    snprintf(sw->days, sizeof(sw->days), "%u", days);
    snprintf(sw->reason, sizeof(sw->reason), "unused for more than %u days (Art. 38)", days);
    snprintf(limit, sizeof(limit), "%d", GW_ACCT_SWEEP_MAX);
    snprintf(purge_max, sizeof(purge_max), "%d", GW_ACCT_SWEEP_SESSIONS_MAX);
    vals[0] = sw->days;
    vals[1] = limit;
    if (out != NULL)
        *out = NULL;
    if (gw_db_exec(db, st, 2, GW_DB_TXN, sweep_read_cb, r, &r->dbreq) != 0) {
        gw_acct_req_free(r);
        return GW_EUNAVAIL;
    }
    if (out != NULL)
        *out = r;
    return 0;
}
