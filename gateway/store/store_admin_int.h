/* store_admin_int.h: private to the store layer's modules of the CLI's blocking-libpq statements
 * (store_admin.c, store_acct_admin.c, audit_read.c, store_retention_admin.c, ...): the connection
 * they share and its refusal message. Not for other layers: they use store_admin.h and the
 * modules' own headers. */
#ifndef GW_STORE_ADMIN_INT_H
#define GW_STORE_ADMIN_INT_H

#include <libpq-fe.h>

struct gw_admin {
    PGconn *pg;
};

/* A timestamptz column as UTC text, YYYY-MM-DDTHH:MM:SSZ, in the CLI's listings. */
#define UTC_TEXT(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The server's message for a failed statement (res may be NULL: the connection's) into errbuf,
 * one line; returns GW_EINTERNAL. */
int gw_admin_refused(const PGresult *res, const struct gw_admin *a, char *errbuf, size_t errlen);

/* Runs a statement without rows (BEGIN, COMMIT). Returns 0 or GW_EINTERNAL. */
int gw_admin_command(struct gw_admin *a, const char *sql, char *errbuf, size_t errlen);

#endif
