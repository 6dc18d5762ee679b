/* store_routes.h: the routing table (sql/007_scope.sql) as waygatectl keeps it: destination region
 * code -> the branch that delivers there, which makes a waybill part of that branch's scope. Each
 * change is written together with its admin_log row (via 'cli') in one statement: both or neither.
 * Blocking libpq on the CLI's connection (store_admin.h); never the daemon. */
#ifndef GW_STORE_ROUTES_H
#define GW_STORE_ROUTES_H

#include <stddef.h>

#include "err.h"
#include "store_admin.h"

/* Routes region (6 digits) to branch, replacing its previous branch; by: who did it. Returns 0 or
 * GW_EINTERNAL with a one-line message. */
int gw_admin_route_set(struct gw_admin *a, const char *region, const char *branch, const char *by,
                       char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Removes region's route. Returns 0, GW_ENOTFOUND (no such route: nothing logged) or
 * GW_EINTERNAL. */
int gw_admin_route_remove(struct gw_admin *a, const char *region, const char *by, char *errbuf,
                          size_t errlen) GW_MUST_CHECK;

struct gw_admin_route {
    const char *region, *branch, *created_by;
    const char *created_at; /* UTC, YYYY-MM-DDTHH:MM:SSZ */
};
typedef void (*gw_admin_route_cb)(void *arg, const struct gw_admin_route *r);

/* Calls cb for each route, by region code. Returns 0 or GW_EINTERNAL. */
int gw_admin_route_list(struct gw_admin *a, gw_admin_route_cb cb, void *arg, char *errbuf,
                        size_t errlen) GW_MUST_CHECK;

#endif
