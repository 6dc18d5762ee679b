/* conninfo.h: what the daemon and the CLI check of a libpq connection string before they use it:
 * it must not carry a password (password= or sslpassword=, in key=value form, in a URI's
 * user:password@ or in its ?password= / ?sslpassword= parameters, empty ones included). A
 * connection string shows in a configuration file, in /proc/PID/cmdline (readable by every local
 * user), in a shell's history; the password belongs in a passfile (passfile=, PGPASSFILE or
 * ~/.pgpass) or is not needed at all (peer or certificate authentication). Pure: parses with
 * libpq's PQconninfoParse (no environment, no defaults, no connection), keeps nothing. */
#ifndef GW_CONNINFO_H
#define GW_CONNINFO_H

enum gw_conninfo_verdict {
    GW_CONNINFO_OK = 0,   /* a connection string or URI without a password */
    GW_CONNINFO_PASSWORD, /* it sets password or sslpassword (to anything, "" included) */
    GW_CONNINFO_INVALID,  /* not parsed by libpq (NULL included): never echo it, it may hold one */
    GW_CONNINFO_DBNAME,   /* not a connection string (no '=', no postgres[ql]:// prefix): a bare
                           * database name, as libpq takes it where it expands dbname */
};

enum gw_conninfo_verdict gw_conninfo_check(const char *conninfo);

#endif
