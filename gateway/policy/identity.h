/* identity.h: who is calling. A principal is resolved once per call from what the transport
 * verified (struct gw_peer: the client certificate) and what the call carries (an
 * "authorization" metadata value). Devices, branch systems and the backend are known by their
 * client certificate; people will log in and present a bearer token (accounts issue), which is
 * why resolution is a step of the call that may wait (rpc layer), not a property of the
 * connection.
 * Pure: no I/O, no logging. */
#ifndef GW_IDENTITY_H
#define GW_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "peer.h"

/* How the principal proved who it is. */
enum gw_authn {
    GW_AUTHN_NONE = 0, /* nothing verified: only the insecure loopback listener */
    GW_AUTHN_CERT,     /* a verified client certificate */
    GW_AUTHN_TOKEN,    /* a bearer token over a verified certificate (accounts issue) */
};

struct gw_principal {
    char name[72];   /* the registered principal's name, or the account name (GW_AUTHN_TOKEN; up
                      * to 64 bytes) */
    char role[32];   /* one of the roles policy.h knows; "" when unauthenticated */
    char branch[32]; /* branch scope; "" when the principal has none */
    enum gw_authn authn;
    char peer[64];      /* the connection's address, for logs and audit records */
    char cert[64];      /* the certificate principal the call came over (its registered name);
                         * equal to name for GW_AUTHN_CERT; "" without a certificate */
    bool cert_admin;    /* that certificate is registered for administration */
    int64_t account_id; /* GW_AUTHN_TOKEN: the account's id; 0 otherwise */
    bool must_change;   /* GW_AUTHN_TOKEN: the password must be changed before anything else */
};

/* True when p was authenticated at all (certificate or token). */
static inline bool gw_principal_authenticated(const struct gw_principal *p)
{
    return p->authn != GW_AUTHN_NONE;
}

/* Resolves the caller from the connection's peer and the call's authorization metadata (NULL
 * when absent). The subject rule, kept only as the dispatcher's default for unit tests (waygated
 * resolves registered principals and tokens in api/api_auth.c): a verified certificate's
 * subject gives the principal (CN the name, OU the role, L the branch scope).
 * Returns 0 with *out filled (authn NONE on a connection without a certificate), or GW_EAUTH
 * with *f naming the field and the rule: a certificate without a role (OU), or a bearer token
 * (this rule checks none, so it accepts none). */
int gw_identity_resolve(const struct gw_peer *peer, const char *authorization,
                        struct gw_principal *out, struct gw_fault *f) GW_MUST_CHECK;

#endif
