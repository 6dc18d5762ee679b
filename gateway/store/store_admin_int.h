/* store_admin_int.h: private to the CLI's blocking-libpq statements (store_admin.c,
 * store_acct_admin.c): the connection they share. Not for other modules: they use
 * store_admin.h and store_acct_admin.h. */
#ifndef GW_STORE_ADMIN_INT_H
#define GW_STORE_ADMIN_INT_H

#include <libpq-fe.h>

struct gw_admin {
    PGconn *pg;
};

#endif
