/* store_req.c: the store's request handles: one per operation a caller started (a submit, a batch,
 * a get, a segment load), listed on the store so that freeing the store cancels them. Below
 * store.c, store_group.c's users and store_read.c, so that neither needs the other. Also the one
 * send of the handles that are not on the list (store_bulk.c's, store_lawful.c's, outbox.c's).
 * Invariant: a handle is on its store's list from gw_store_req_new to gw_store_req_free. */
#include "alloc.h"
#include "store_int.h"

struct gw_store_req *gw_store_req_new(struct gw_store *s, enum gw_store_kind kind, void *arg)
{
    struct gw_store_req *r = gw_calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->store = s;
    r->kind = kind;
    r->arg = arg;
    TAILQ_INSERT_TAIL(&s->reqs, r, link);
    return r;
}

void gw_store_req_free(struct gw_store_req *r)
{
    size_t i;

    TAILQ_REMOVE(&r->store->reqs, r, link);
    if (r->items != NULL)
        for (i = 0; i < r->n; i++)
            gw_store_item_free(r->items[i]);
    gw_free(r->items);
    gw_free(r->results);
    gw_free(r);
}

int gw_store_txn_send(struct gw_store *s, const struct gw_db_stmt *st, int n, gw_db_done_cb done,
                      void *req, struct gw_db_req **dbreq)
{
    int err = gw_db_exec(s->db, st, n, GW_DB_TXN, done, req, dbreq);

    if (err != 0)
        gw_free(req);
    return err;
}
