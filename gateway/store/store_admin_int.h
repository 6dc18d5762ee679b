/* store_admin_int.h: private to the CLI's blocking-libpq statements (store_admin.c,
 * store_acct_admin.c): the connection they share. Not for other modules: they use
 * store_admin.h and store_acct_admin.h. */
#ifndef GW_STORE_ADMIN_INT_H
#define GW_STORE_ADMIN_INT_H

#include <libpq-fe.h>

struct gw_admin {
    PGconn *pg;
};

/* The server's message for a failed statement (res may be NULL: the connection's) into errbuf,
 * one line; returns GW_EINTERNAL. */
int gw_admin_refused(const PGresult *res, const struct gw_admin *a, char *errbuf, size_t errlen);

/* Runs a statement without rows (BEGIN, COMMIT). Returns 0 or GW_EINTERNAL. */
int gw_admin_command(struct gw_admin *a, const char *sql, char *errbuf, size_t errlen);

#endif
