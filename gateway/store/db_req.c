/* db_req.c: the pool's requests: one allocation holding copies of the statements, completion
 * (the callback, unless cancelled, then a wiped free), and the prepared-statement lookup. Used by
 * db.c (the pool) and db_conn.c (one connection) alike, so that neither needs the other's code:
 * a connection reaches the pool's dispatcher only through db->dispatch.
 * Invariant: a request's callback runs at most once, and the request is freed right after. */
#include <stdbool.h>
#include <string.h>

#include "alloc.h"
#include "db_int.h"

/* ---- requests ---- */

void gw_db_req_free(struct gw_db_req *r)
{
    int i;

    if (r == NULL)
        return;
    gw_db_owner_release(r); /* freed without its callback: cancelled while queued, pool freed */
    for (i = 0; i < r->nstmts; i++)
        PQclear(r->results[i]);
    gw_free(r->errmsg);
    /* The copied parameters may be ciphertext, blind indexes or worse: wipe them. */
    gw_free_wipe(r, r->alloc_size);
}

/* Runs the request's callback (unless cancelled) and frees it. r is on no list. */
void gw_db_req_complete(struct gw_db_req *r, int err)
{
    struct gw_db_result res;
    struct gw_db_owner owner, prev;

    /* The charge is given back before the callback, so that the call's next step (or its
     * handler, after the identity step's lookup) finds its owner's count without this request;
     * the callback runs with the request's owner current, so that the steps it submits are
     * charged to the same principal (none for an uncharged request). */
    memset(&owner, 0, sizeof(owner));
    if (r->owner != NULL) {
        owner.set = true;
        memcpy(owner.key, r->owner->key, GW_DB_OWNER_LEN);
    }
    gw_db_owner_release(r);
    if (!r->cancelled && r->cb != NULL) {
        res.rolled_back_at =
            err == GW_EUNAVAIL && r->failed_stmt >= 0 && strncmp(r->sqlstate, "53", 2) == 0
                ? r->failed_stmt
                : -1;
        if (err == GW_EUNAVAIL) {
            int i;
            for (i = 0; i < r->nstmts; i++) {
                PQclear(r->results[i]);
                r->results[i] = NULL;
            }
            r->failed_stmt = -1;
        }
        res.nresults = r->nstmts;
        res.results = r->results;
        res.failed_stmt = err == GW_EUNAVAIL ? -1 : r->failed_stmt;
        res.sqlstate = (err != GW_EUNAVAIL && r->failed_stmt >= 0 && r->sqlstate[0] != '\0')
                           ? r->sqlstate
                           : NULL;
        res.errmsg = err == GW_EUNAVAIL ? NULL : r->errmsg;
        gw_db_owner_swap(r->db, &owner, &prev);
        r->cb(r->arg, err, &res);
        gw_db_owner_swap(r->db, &prev, NULL);
    }
    gw_db_req_free(r);
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* Copies the statements into one allocation. Returns NULL with *err set. */
struct gw_db_req *gw_db_req_new(const struct gw_db_stmt *stmts, int nstmts, int *err)
{
    size_t nparams_total = 0, nbytes = 0, size, off_ptr, off_int, off_chr;
    struct gw_db_req *r;
    char *base, *chr;
    const char **vals;
    int *ints;
    int i, j;

    *err = GW_EINVAL;
    if (stmts == NULL || nstmts <= 0 || nstmts > 65535)
        return NULL;
    for (i = 0; i < nstmts; i++) {
        const struct gw_db_stmt *s = &stmts[i];
        if (s->sql == NULL || s->nparams < 0 || s->nparams > 65535 ||
            (s->nparams > 0 && s->values == NULL))
            return NULL;
        nbytes += strlen(s->sql) + 1;
        for (j = 0; j < s->nparams; j++) {
            bool bin = s->formats != NULL && s->formats[j] != 0;
            if (s->values[j] == NULL)
                continue;
            if (bin && (s->lengths == NULL || s->lengths[j] < 0))
                return NULL;
            nbytes += (bin ? (size_t)s->lengths[j] : strlen(s->values[j])) + 1;
        }
        nparams_total += (size_t)s->nparams;
    }
    off_ptr = align_up(sizeof(*r), 16);
    size = off_ptr + (size_t)nstmts * (sizeof(struct req_stmt) + sizeof(PGresult *)) +
           nparams_total * sizeof(char *);
    off_int = align_up(size, sizeof(int));
    size = off_int + nparams_total * 2 * sizeof(int);
    off_chr = size;
    size += nbytes;

    *err = GW_ENOMEM;
    base = gw_calloc(1, size);
    if (base == NULL)
        return NULL;
    r = (struct gw_db_req *)base;
    r->alloc_size = size;
    r->nstmts = nstmts;
    r->failed_stmt = -1;
    r->stmts = (struct req_stmt *)(base + off_ptr);
    r->results = (PGresult **)(r->stmts + nstmts);
    vals = (const char **)(r->results + nstmts);
    ints = (int *)(base + off_int);
    chr = base + off_chr;
    for (i = 0; i < nstmts; i++) {
        const struct gw_db_stmt *s = &stmts[i];
        struct req_stmt *d = &r->stmts[i];
        size_t len = strlen(s->sql) + 1;
        int *lens = ints, *fmts = ints + s->nparams;

        memcpy(chr, s->sql, len);
        d->sql = chr;
        chr += len;
        d->nparams = s->nparams;
        d->result_format = s->result_format;
        d->prepare_slot = -1;
        d->values = vals;
        d->lengths = lens;
        d->formats = fmts;
        for (j = 0; j < s->nparams; j++) {
            bool bin = s->formats != NULL && s->formats[j] != 0;
            fmts[j] = bin ? 1 : 0;
            if (s->values[j] == NULL) {
                vals[j] = NULL;
                lens[j] = 0;
                continue;
            }
            len = bin ? (size_t)s->lengths[j] : strlen(s->values[j]);
            memcpy(chr, s->values[j], len);
            chr[len] = '\0';
            vals[j] = chr;
            lens[j] = (int)len;
            chr += len + 1;
        }
        vals += s->nparams;
        ints += 2 * s->nparams;
    }
    *err = 0;
    return r;
}

/* ---- prepared statements ---- */

int gw_db_find_prepared(const struct gw_db *db, const char *sql)
{
    int i;

    for (i = 0; i < db->nprepared; i++)
        if (strcmp(db->prepared[i].sql, sql) == 0)
            return i;
    return -1;
}
