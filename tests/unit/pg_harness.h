/* pg_harness.h: a throwaway PostgreSQL for unit tests (header-only, static functions).
 * initdb into a mkdtemp directory, socket-only (-k DIR, listen_addresses=''), trust auth, fsync
 * off; as root the server runs as the postgres user. Binaries: $WAYGATE_PG_BIN, else
 * /usr/lib/postgresql/15/bin, else PATH. pgh_available() false -> the test should skip(). */
#ifndef GW_TEST_PG_HARNESS_H
#define GW_TEST_PG_HARNESS_H

#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "config.h"
#include "migrate.h"

struct pgh {
    char bin[256];
    char dir[256];
    int port;
    bool as_postgres; /* running as root: wrap commands in runuser -u postgres -- */
    bool running;
    char conninfo[512];
};

static inline int pgh_run(const struct pgh *h, const char *inner)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd), "cd /tmp && %s%s >>%s/harness.log 2>&1",
             h->as_postgres ? "runuser -u postgres -- " : "", inner, h->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static inline bool pgh_find_bin(struct pgh *h)
{
    const char *env = getenv("WAYGATE_PG_BIN");
    const char *cands[] = {env, "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin",
                           "/usr/lib/postgresql/17/bin", "/usr/bin"};
    char p[512];
    size_t i;

    for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
        if (cands[i] == NULL)
            continue;
        snprintf(p, sizeof(p), "%s/initdb", cands[i]);
        if (access(p, X_OK) == 0) {
            snprintf(h->bin, sizeof(h->bin), "%s", cands[i]);
            return true;
        }
    }
    return false;
}

/* False when this machine cannot run a throwaway PostgreSQL (the tests then skip), unless
 * WAYGATE_REQUIRE_PG is set (deploy/test-all sets it): then true, so that set-up fails loudly
 * instead of a whole test program passing as skipped. */
static inline bool pgh_available(void)
{
    struct pgh h;
    memset(&h, 0, sizeof(h));
    if (pgh_find_bin(&h) && (geteuid() != 0 || getpwnam("postgres") != NULL))
        return true;
    if (getenv("WAYGATE_REQUIRE_PG") != NULL) {
        fprintf(stderr, "pg_harness: PostgreSQL 15 binaries (or user postgres) missing, and "
                        "WAYGATE_REQUIRE_PG is set\n");
        return true;
    }
    return false;
}

static inline int pgh_start(struct pgh *h)
{
    char cmd[1536];

    snprintf(
        cmd, sizeof(cmd),
        "%s/pg_ctl -D %s/data -l %s/server.log -w -t 60 "
        "-o \"-k %s -c listen_addresses='' -p %d -c fsync=off -c synchronous_commit=on\" start",
        h->bin, h->dir, h->dir, h->dir, h->port);
    if (pgh_run(h, cmd) != 0)
        return -1;
    h->running = true;
    return 0;
}

static inline int pgh_stop(struct pgh *h)
{
    char cmd[1024];

    if (!h->running)
        return 0;
    snprintf(cmd, sizeof(cmd), "%s/pg_ctl -D %s/data -w -t 60 -m fast stop", h->bin, h->dir);
    if (pgh_run(h, cmd) != 0)
        return -1;
    h->running = false;
    return 0;
}

/* Creates and starts a fresh cluster. Returns 0 or -1. */
static inline int pgh_init(struct pgh *h)
{
    char cmd[1024];
    struct passwd *pw;

    memset(h, 0, sizeof(*h));
    if (!pgh_find_bin(h))
        return -1;
    snprintf(h->dir, sizeof(h->dir), "/tmp/waygate-pg-XXXXXX");
    if (mkdtemp(h->dir) == NULL)
        return -1;
    h->port = 50000 + (int)(getpid() % 10000);
    if (geteuid() == 0) {
        pw = getpwnam("postgres");
        if (pw == NULL || chown(h->dir, pw->pw_uid, pw->pw_gid) != 0)
            return -1;
        h->as_postgres = true;
    }
    chmod(h->dir, 0700);
    snprintf(cmd, sizeof(cmd),
             "%s/initdb -D %s/data -U postgres --auth=trust -E UTF8 --locale=C -N", h->bin, h->dir);
    if (pgh_run(h, cmd) != 0)
        return -1;
    snprintf(h->conninfo, sizeof(h->conninfo), "host=%s port=%d dbname=postgres user=postgres",
             h->dir, h->port);
    return pgh_start(h);
}

/* Runs a SQL file (or string with -c) through psql; returns 0 or -1. */
static inline int pgh_psql_file(struct pgh *h, const char *path)
{
    char cmd[1536];

    snprintf(cmd, sizeof(cmd),
             "%s/psql -X -q -v ON_ERROR_STOP=1 -h %s -p %d -U postgres -d postgres -f %s", h->bin,
             h->dir, h->port, path);
    return pgh_run(h, cmd);
}

/* Stops the server and removes the directory. */
static inline void pgh_destroy(struct pgh *h)
{
    char cmd[512];

    if (h->dir[0] == '\0')
        return;
    (void)pgh_stop(h);
    if (getenv("WAYGATE_KEEP_PG") == NULL) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", h->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "pg_harness: could not remove %s\n", h->dir);
    }
    h->dir[0] = '\0';
}

/* A no-op timer callback: a periodic timer with it keeps EVLOOP_ONCE from sleeping forever. */
static inline void pgh_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static inline long pgh_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000L + tv.tv_usec / 1000;
}

/* Runs base's loop until pred(arg) or timeout_ms; returns pred's last value. */
static inline bool pgh_loop_until(struct event_base *base, bool (*pred)(void *), void *arg,
                                  long timeout_ms)
{
    long end = pgh_now_ms() + timeout_ms;
    while (!pred(arg) && pgh_now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    return pred(arg);
}

/* Starts PostgreSQL in h (*started then true, so the teardown knows to destroy it), applies the
 * gateway's migrations and opens *check, a blocking connection for the test's own SQL. Returns
 * 0, or -1 after one line on stderr naming test and what failed. */
static inline int pgh_init_migrated(struct pgh *h, const char *test, PGconn **check, bool *started)
{
    char errbuf[512];
    int ver = 0;

    if (pgh_init(h) != 0) {
        fprintf(stderr, "%s: could not start PostgreSQL (see %s)\n", test, h->dir);
        return -1;
    }
    *started = true;
    if (gw_migrate_run(h->conninfo, gw_migrations, gw_migrations_count, NULL, NULL, &ver, errbuf,
                       sizeof(errbuf)) != 0) {
        fprintf(stderr, "%s: migrations failed: %s\n", test, errbuf);
        return -1;
    }
    *check = PQconnectdb(h->conninfo);
    if (PQstatus(*check) != CONNECTION_OK) {
        fprintf(stderr, "%s: cannot connect: %s\n", test, PQerrorMessage(*check));
        return -1;
    }
    return 0;
}

/* The pool settings the database unit tests use against h: 2 connections, 4 in flight each, a
 * 2 s connect timeout and reconnect_max_ms of backoff at most. */
static inline void pgh_db_config(const struct pgh *h, struct gw_config *cfg,
                                 uint32_t reconnect_max_ms)
{
    cfg->db_conninfo = (char *)h->conninfo;
    cfg->db_pool_size = 2;
    cfg->db_pipeline_depth = 4;
    cfg->db_queue_max = 4096;
    cfg->db_connect_timeout_ms = 2000;
    cfg->db_reconnect_max_ms = reconnect_max_ms;
}

#endif
