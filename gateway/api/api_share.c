/* api_share.c: the shares of the database queue per certificate principal (api.h, db.h): the
 * dispatcher's admit and within hooks over the app's pool. Invariant: the pool's current owner
 * is restored when within returns, whatever fn did. */
#include "api.h"
#include "app.h"
#include "db.h"

bool gw_api_share_admit(void *ctx, const struct gw_peer *peer, struct gw_fault *f)
{
    struct gw_app *app = ctx;
    struct gw_db_owner o;

    if (app == NULL || app->db == NULL)
        return true;
    gw_db_owner_of(&o, peer->cert, peer->cert_sha256);
    if (!gw_db_share_used(app->db, &o))
        return true;
    (void)gw_fault_set(f, GW_ETOOBIG, NULL, NULL, GW_RULE_DB_SHARE);
    f->limit = gw_db_share(app->db);
    return false;
}

void gw_api_share_within(void *ctx, const struct gw_peer *peer, gw_rpc_run_fn fn, void *arg)
{
    struct gw_app *app = ctx;
    struct gw_db_owner o, prev;

    if (app == NULL || app->db == NULL) {
        fn(arg);
        return;
    }
    gw_db_owner_of(&o, peer->cert, peer->cert_sha256);
    gw_db_owner_swap(app->db, &o, &prev);
    fn(arg);
    gw_db_owner_swap(app->db, &prev, NULL);
}
