/* identity.c: the caller of one call, from the verified certificate and the authorization
 * metadata. Invariant: a principal has a role only if a verified credential gave it one. */
#include "identity.h"

#include <stdio.h>
#include <string.h>

int gw_identity_resolve(const struct gw_peer *peer, const char *authorization,
                        struct gw_principal *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->peer, sizeof(out->peer), "%s", peer->addr);
    *why = NULL;
    if (authorization != NULL) {
        /* Accounts and tokens come with the principals issue; until then no token is valid,
         * and a caller presenting one must not silently run as its certificate instead. */
        *why = "authorization: bearer tokens are not accepted by this gateway";
        return GW_EAUTH;
    }
    if (!peer->cert)
        return 0; /* unauthenticated: only methods open to anyone will accept it */
    if (peer->cert_cn[0] == '\0' || peer->cert_ou[0] == '\0') {
        *why = "client certificate: the subject must name the principal (CN) and its role (OU)";
        return GW_EAUTH;
    }
    snprintf(out->name, sizeof(out->name), "%s", peer->cert_cn);
    snprintf(out->role, sizeof(out->role), "%s", peer->cert_ou);
    snprintf(out->branch, sizeof(out->branch), "%s", peer->cert_l);
    out->authn = GW_AUTHN_CERT;
    return 0;
}
