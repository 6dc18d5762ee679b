/* api_share.c: the shares of the database queue per principal (api.h, db.h): the dispatcher's
 * admit and within hooks over the app's pool. The owner is the connection's certificate until
 * the identity step has resolved an account; from then on the account over that certificate.
 * Invariant: the pool's current owner is restored when within returns, whatever fn did. */
#include <string.h>

#include <openssl/evp.h>

#include "api.h"
#include "app.h"
#include "db.h"
#include "identity.h"

/* Domain separation: an account's key is never a certificate's (a certificate's key is its
 * fingerprint, the SHA-256 of its DER, which this input is not) nor another version's. */
static const char ACCOUNT_LABEL[] = "waygate db share: account over certificate v1";

/* The owner of a call's work: p NULL (the identity step) or not an account's, the
 * certificate's (gw_db_owner_of: anonymous callers one key); an account's, SHA-256(label 0x00
 * fingerprint account id as 8 big-endian bytes). Should the digest fail, the certificate's: an
 * account is then charged as it was before it had a share of its own, never to no one. */
static void owner_of(struct gw_db_owner *o, const struct gw_peer *peer,
                     const struct gw_principal *p)
{
    unsigned char in[sizeof(ACCOUNT_LABEL) + GW_PEER_FPR_LEN + 8];
    unsigned int n = 0;
    uint64_t id;

    gw_db_owner_of(o, peer->cert, peer->cert_sha256);
    if (p == NULL || p->authn != GW_AUTHN_TOKEN || !peer->cert)
        return;
    memcpy(in, ACCOUNT_LABEL, sizeof(ACCOUNT_LABEL)); /* its NUL ends the label */
    memcpy(in + sizeof(ACCOUNT_LABEL), peer->cert_sha256, GW_PEER_FPR_LEN);
    id = (uint64_t)p->account_id;
    for (int i = 0; i < 8; i++)
        in[sizeof(ACCOUNT_LABEL) + GW_PEER_FPR_LEN + i] = (unsigned char)(id >> (56 - 8 * i));
    if (EVP_Digest(in, sizeof(in), o->key, &n, EVP_sha256(), NULL) != 1 || n != GW_DB_OWNER_LEN)
        gw_db_owner_of(o, peer->cert, peer->cert_sha256);
}

bool gw_api_share_admit(void *ctx, const struct gw_peer *peer, const struct gw_principal *p,
                        struct gw_fault *f)
{
    struct gw_app *app = ctx;
    struct gw_db_owner o;

    if (app == NULL || app->db == NULL)
        return true;
    owner_of(&o, peer, p);
    if (!gw_db_share_used(app->db, &o))
        return true;
    (void)gw_fault_set(f, GW_ETOOBIG, NULL, NULL, GW_RULE_DB_SHARE);
    f->limit = gw_db_share(app->db);
    return false;
}

void gw_api_share_within(void *ctx, const struct gw_peer *peer, const struct gw_principal *p,
                         gw_rpc_run_fn fn, void *arg)
{
    struct gw_app *app = ctx;
    struct gw_db_owner o, prev;

    if (app == NULL || app->db == NULL) {
        fn(arg);
        return;
    }
    owner_of(&o, peer, p); /* before fn, which may free the call that holds p */
    gw_db_owner_swap(app->db, &o, &prev);
    fn(arg);
    gw_db_owner_swap(app->db, &prev, NULL);
}
