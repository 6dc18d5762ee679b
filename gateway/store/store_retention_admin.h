/* store_retention_admin.h: the retention floor (sql/020_retention_floor.sql) as waygatectl keeps
 * it: the shortest period, in days, by which the database lets the gateway's retention sweep
 * destroy records. A change is written together with its admin_log row (via 'cli') in one
 * statement. Blocking libpq on the CLI's connection (store_admin.h); never the daemon. */
#ifndef GW_STORE_RETENTION_ADMIN_H
#define GW_STORE_RETENTION_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store_admin.h"

struct gw_admin_floor {
    int32_t min_days;
    const char *set_by;
    const char *set_at; /* UTC, YYYY-MM-DDTHH:MM:SSZ */
};
typedef void (*gw_admin_floor_cb)(void *arg, const struct gw_admin_floor *f);

/* Calls cb with the floor. Returns 0 or GW_EINTERNAL with a one-line message. */
int gw_admin_floor_get(struct gw_admin *a, gw_admin_floor_cb cb, void *arg, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

/* Sets the floor to days (1 to 36500); by: who did it. *was: the previous floor. Returns 0 or
 * GW_EINTERNAL. */
int gw_admin_floor_set(struct gw_admin *a, int32_t days, const char *by, int32_t *was, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

#endif
