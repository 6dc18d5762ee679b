/* rpc.h: the method table. Every method the gateway serves is listed with its full gRPC path,
 * its handler (NULL: the transport answers UNIMPLEMENTED) and who may call it. Deny by default:
 * a method reachable without a client certificate must say so (GW_RPC_ANYONE). */
#ifndef GW_RPC_H
#define GW_RPC_H

#include <stddef.h>

#include "call.h"

enum gw_rpc_access {
    GW_RPC_AUTHENTICATED = 0, /* a verified principal; if roles != NULL, one of those roles */
    GW_RPC_ANYONE,            /* also unauthenticated callers (health check) */
};

struct gw_rpc_method {
    struct gw_method m;
    enum gw_rpc_access access;
    const char *const *roles; /* NULL-terminated role names, or NULL: any authenticated role */
};

struct gw_rpc_table {
    const struct gw_rpc_method *methods;
    size_t n;
};

/* The gateway's table (static, never freed). */
const struct gw_rpc_table *gw_rpc_default(void);

/* The entry for path, or NULL when the path is not in the table. */
const struct gw_rpc_method *gw_rpc_lookup(const struct gw_rpc_table *t, const char *path);

/* May principal p call method m? Returns 0, GW_EAUTH (unauthenticated caller on a method that
 * needs a certificate) or GW_EPERM (role not allowed). */
int gw_rpc_authorize(const struct gw_rpc_method *m, const struct gw_principal *p) GW_MUST_CHECK;

#endif
