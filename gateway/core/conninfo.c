/* conninfo.c: the no-password rule of a libpq connection string (conninfo.h), shared by the
 * daemon's [database] conninfo (config.c) and waygatectl's --db and $WAYGATE_PGURI[_OWNER]. */
#include "conninfo.h"

#include <string.h>

#include <libpq-fe.h>

/* libpq's own test (recognized_connection_string): a URI prefix or an '=' anywhere. */
static int looks_like_conninfo(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0 ||
           strchr(s, '=') != NULL;
}

enum gw_conninfo_verdict gw_conninfo_check(const char *conninfo)
{
    PQconninfoOption *opts, *o;
    char *err = NULL;
    enum gw_conninfo_verdict v = GW_CONNINFO_OK;

    if (conninfo == NULL)
        return GW_CONNINFO_INVALID;
    opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        PQfreemem(err); /* libpq's message may quote the string: never shown */
        return looks_like_conninfo(conninfo) ? GW_CONNINFO_INVALID : GW_CONNINFO_DBNAME;
    }
    for (o = opts; o->keyword != NULL; o++)
        if ((strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0) &&
            o->val != NULL)
            v = GW_CONNINFO_PASSWORD;
    PQconninfoFree(opts);
    return v;
}
