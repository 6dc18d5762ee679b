/* identity.c: the caller of one call, from the verified certificate and the authorization
 * metadata. Invariant: a principal has a role only if a verified credential gave it one. */
#include "identity.h"

#include <stdio.h>
#include <string.h>

int gw_identity_resolve(const struct gw_peer *peer, const char *authorization,
                        struct gw_principal *out, struct gw_fault *f)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->peer, sizeof(out->peer), "%s", peer->addr);
    gw_fault_clear(f);
    if (authorization != NULL)
        /* This subject-only rule checks no token (waygated does, in api/api_auth.c): a caller
         * presenting one must not silently run as its certificate instead. */
        return gw_fault_set(f, GW_EAUTH, NULL, "authorization", GW_RULE_TOKEN_NOT_ACCEPTED);
    if (!peer->cert)
        return 0; /* unauthenticated: only methods open to anyone will accept it */
    if (peer->cert_cn[0] == '\0' || peer->cert_ou[0] == '\0')
        return gw_fault_set(f, GW_EAUTH, NULL, "client certificate", GW_RULE_CERT_SUBJECT);
    snprintf(out->name, sizeof(out->name), "%s", peer->cert_cn);
    snprintf(out->role, sizeof(out->role), "%s", peer->cert_ou);
    snprintf(out->branch, sizeof(out->branch), "%s", peer->cert_l);
    out->authn = GW_AUTHN_CERT;
    return 0;
}
