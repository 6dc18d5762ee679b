/* ctl_keys.c: `waygatectl keys init|rotate|retire|status|rewrap`: the key file's life cycle and the
 * batched re-wrapping of data keys under the newest KEK. Field ciphertexts are never touched;
 * key bytes are never printed. Blocking libpq is fine here (a CLI, not the event loop). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "crypto.h"
#include "ctl.h"
#include "keyring.h"
#include "record.h"

#define ME "waygatectl keys"
#define BATCH_DEFAULT 500
#define BATCH_MAX 100000
#define OID_INT4 23
#define OID_BYTEA 17
#define OID_UUID 2950

static void keys_usage(FILE *f)
{
    fprintf(
        f,
        "usage: waygatectl keys init   --keyring PATH\n"
        "       waygatectl keys rotate --keyring PATH\n"
        "       waygatectl keys retire --keyring PATH --version N [--db CONNINFO]\n"
        "       waygatectl keys status --keyring PATH [--db CONNINFO]\n"
        "       waygatectl keys rewrap --keyring PATH [--db CONNINFO] [--batch N]\n"
        "  init    create a new key file (mode 0600) with random keys; never overwrites\n"
        "  rotate  add a KEK version; new records use it once the gateway reloads the keys\n"
        "  rewrap  re-wrap every record's data key under the newest KEK, in batches of N\n"
        "          (default %d); field ciphertexts are not touched; safe to interrupt and rerun\n"
        "  retire  erase KEK version N from the key file; refused while records still use it\n"
        "  status  KEK versions and states (never key bytes); with --db, records per version\n"
        "  PATH defaults to $WAYGATE_KEYRING; rewrap and retire use $WAYGATE_PGURI when --db\n"
        "  is not given.\n",
        BATCH_DEFAULT);
}

struct keys_opts {
    const char *keyring;
    const char *db;
    uint32_t version;
    bool has_version;
    long batch;
};

static int parse_u32(const char *s, uint32_t *v)
{
    char *end = NULL;
    unsigned long long x;
    if (!s || s[0] < '0' || s[0] > '9')
        return -1;
    x = strtoull(s, &end, 10);
    if (*end != '\0' || x == 0 || x > GW_KEYRING_MAX_VERSION)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

static PGconn *connect_db(const char *conninfo)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, ME ": cannot connect to the database: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static void uuid_str(const uint8_t id[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 15];
    }
    out[o] = 0;
}

/* SELECT count(*) ... with one int4 parameter; -1 on error (printed). */
static long long count_where(PGconn *pg, const char *sql, uint32_t v)
{
    char vs[16];
    const char *params[1] = {vs};
    long long n = -1;
    snprintf(vs, sizeof vs, "%" PRIu32, v);
    PGresult *r = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fprintf(stderr, ME ": %s", PQerrorMessage(pg));
    else
        n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static int keys_init(const struct keys_opts *o)
{
    char err[512];
    if (gw_keyring_file_init(o->keyring, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    printf("created keyring %s (mode 0600) with KEK version 1 and new index, token and content "
           "keys\n",
           o->keyring);
    return GW_CTL_OK;
}

static int keys_rotate(const struct keys_opts *o)
{
    char err[512];
    uint32_t v = 0;
    if (gw_keyring_file_rotate(o->keyring, &v, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    printf("added KEK version %" PRIu32 " (now current); reload or restart the gateways, then "
           "run 'waygatectl keys rewrap'\n",
           v);
    return GW_CTL_OK;
}

static int keys_status(const struct keys_opts *o, bool use_db)
{
    char err[512];
    struct gw_keyring *kr = NULL;
    PGconn *pg = NULL;
    PGresult *r = NULL;
    int rc = GW_CTL_FAIL;
    if (gw_keyring_file_load(o->keyring, &kr, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    if (use_db) {
        if (!(pg = connect_db(o->db)))
            goto out;
        r = PQexec(pg, "SELECT kek_version, count(*) FROM waybill GROUP BY 1 ORDER BY 1");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, ME ": %s", PQerrorMessage(pg));
            goto out;
        }
    }
    printf("keyring %s (backend %s)\ncurrent KEK version: %" PRIu32 "\n", o->keyring,
           gw_keyring_backend_name(kr), gw_keyring_current(kr));
    for (size_t i = 0; i < gw_keyring_kek_count(kr); i++) {
        struct gw_keyring_kek k = gw_keyring_kek_at(kr, i);
        char line[160];
        size_t n = (size_t)snprintf(line, sizeof line, "  kek %-6" PRIu32 " %-7s", k.version,
                                    k.active ? "active" : "retired");
        if (r) {
            long long cnt = 0;
            for (int j = 0; j < PQntuples(r); j++)
                if (strtoul(PQgetvalue(r, j, 0), NULL, 10) == k.version)
                    cnt = strtoll(PQgetvalue(r, j, 1), NULL, 10);
            n += (size_t)snprintf(line + n, sizeof line - n, "  %lld records", cnt);
        }
        if (k.version == gw_keyring_current(kr))
            n += (size_t)snprintf(line + n, sizeof line - n, "  (current)");
        while (n > 0 && line[n - 1] == ' ')
            line[--n] = 0;
        puts(line);
    }
    if (r) /* versions in the database that the keyring does not know */
        for (int j = 0; j < PQntuples(r); j++) {
            unsigned long v = strtoul(PQgetvalue(r, j, 0), NULL, 10);
            bool known = false;
            for (size_t i = 0; i < gw_keyring_kek_count(kr); i++)
                known |= gw_keyring_kek_at(kr, i).version == v;
            if (!known)
                printf("  kek %-6lu unknown  %s records (not in this keyring!)\n", v,
                       PQgetvalue(r, j, 1));
        }
    rc = GW_CTL_OK;
out:
    PQclear(r);
    PQfinish(pg);
    gw_keyring_free(kr);
    return rc;
}

static int keys_retire(const struct keys_opts *o)
{
    char err[512];
    struct gw_keyring *kr = NULL;
    /* check the keyring first: the version must exist and not be the newest */
    if (gw_keyring_file_load(o->keyring, &kr, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    uint32_t current = gw_keyring_current(kr);
    bool known = false;
    for (size_t i = 0; i < gw_keyring_kek_count(kr); i++)
        known |= gw_keyring_kek_at(kr, i).version == o->version;
    gw_keyring_free(kr);
    if (!known) {
        fprintf(stderr, ME ": keyring %s has no KEK version %" PRIu32 "\n", o->keyring, o->version);
        return GW_CTL_FAIL;
    }
    if (o->version == current) {
        fprintf(stderr, ME ": KEK version %" PRIu32 " is the newest; rotate first, then rewrap\n",
                o->version);
        return GW_CTL_FAIL;
    }
    if (o->db) {
        PGconn *pg = connect_db(o->db);
        if (!pg)
            return GW_CTL_FAIL;
        long long n =
            count_where(pg, "SELECT count(*) FROM waybill WHERE kek_version = $1", o->version);
        PQfinish(pg);
        if (n < 0)
            return GW_CTL_FAIL;
        if (n > 0) {
            fprintf(stderr,
                    ME ": %lld records still use KEK version %" PRIu32 ": run keys rewrap first\n",
                    n, o->version);
            return GW_CTL_FAIL;
        }
    } else {
        fprintf(stderr,
                ME ": warning: no --db given, not checking that no record uses KEK "
                   "version %" PRIu32 "\n",
                o->version);
    }
    if (gw_keyring_file_retire(o->keyring, o->version, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    printf("retired KEK version %" PRIu32 "; its key bytes are erased from %s\n", o->version,
           o->keyring);
    return GW_CTL_OK;
}

static void progress(bool tty, long long done, long long total)
{
    if (!tty)
        return;
    int width = 40, fill = 0;
    if (total > 0)
        fill = (int)(done >= total ? width : done * width / total);
    fprintf(stderr, "\rrewrap [%.*s%*s] %lld/%lld", fill,
            "########################################", width - fill, "", done, total);
    fflush(stderr);
}

struct rewrap {
    PGconn *pg;
    const struct gw_keyring *kr;
    struct gw_crypto *cx;
    uint32_t newest;
    long batch;
    bool tty;           /* a progress bar is on stderr: end its line before a message */
    uint8_t cursor[16]; /* the last id seen in this pass */
    bool have_cursor;
    long long done, failed;
};

/* One batch in one transaction. Rows after the cursor (by id) are taken; failed rows are
 * counted and skipped (the cursor moves past them). Returns the rows seen, or -1 on a database
 * error. */
static long rewrap_batch(struct rewrap *rw)
{
    PGconn *pg = rw->pg;
    uint8_t *cursor = rw->cursor;
    bool *have_cursor = &rw->have_cursor;
    const char *nl = rw->tty ? "\n" : "";
    char vs[16], ls[24];
    uint8_t dek[GW_CRYPTO_DEK_LEN], wrapped[GW_CRYPTO_WRAPPED_DEK_LEN];
    long seen = -1, updated = 0; /* counted into rw->done only once the batch commits */
    PGresult *r = NULL;
    snprintf(vs, sizeof vs, "%" PRIu32, rw->newest);
    snprintf(ls, sizeof ls, "%ld", rw->batch);

    r = PQexec(pg, "BEGIN");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto dberr;
    PQclear(r);
    {
        const char *params[3] = {vs, ls, (const char *)cursor};
        int lens[3] = {0, 0, 16}, fmts[3] = {0, 0, 1};
        Oid types[3] = {OID_INT4, OID_INT4, OID_UUID};
        r = PQexecParams(pg,
                         *have_cursor
                             ? "SELECT id, kek_version, dek_wrapped FROM waybill WHERE "
                               "kek_version <> $1 AND id > $3 ORDER BY id LIMIT $2 "
                               "FOR UPDATE SKIP LOCKED"
                             : "SELECT id, kek_version, dek_wrapped FROM waybill WHERE "
                               "kek_version <> $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                         *have_cursor ? 3 : 2, types, params, lens, fmts, 1);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        goto dberr;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        const uint8_t *id = (const uint8_t *)PQgetvalue(r, i, 0);
        const uint8_t *vb = (const uint8_t *)PQgetvalue(r, i, 1);
        const uint8_t *w = (const uint8_t *)PQgetvalue(r, i, 2);
        size_t wl = (size_t)PQgetlength(r, i, 2);
        char idtxt[37];
        if (PQgetlength(r, i, 0) != 16 || PQgetlength(r, i, 1) != 4) {
            fprintf(stderr, "%s" ME ": unexpected column types in table waybill\n", nl);
            goto fail;
        }
        memcpy(cursor, id, 16);
        *have_cursor = true;
        uuid_str(id, idtxt);
        uint32_t old =
            ((uint32_t)vb[0] << 24) | ((uint32_t)vb[1] << 16) | ((uint32_t)vb[2] << 8) | vb[3];
        int crc = gw_keyring_unwrap(rw->kr, rw->cx, old, GW_RECORD_TABLE, id, w, wl, dek);
        if (crc == 0)
            crc = gw_keyring_wrap(rw->kr, rw->cx, rw->newest, GW_RECORD_TABLE, id, dek, wrapped);
        OPENSSL_cleanse(dek, sizeof dek);
        if (crc != 0) {
            fprintf(stderr, "%s" ME ": record %s (KEK version %" PRIu32 "): %s\n", nl, idtxt, old,
                    crc == GW_EDATALOSS  ? "wrapped data key does not authenticate"
                    : crc == GW_EPRECOND ? "KEK version unknown or retired in this keyring"
                                         : gw_err_str(crc));
            rw->failed++;
            continue;
        }
        uint32_t nv = htonl(rw->newest), ov = htonl(old);
        const char *up[4] = {(const char *)wrapped, (const char *)&nv, (const char *)id,
                             (const char *)&ov};
        int ul[4] = {GW_CRYPTO_WRAPPED_DEK_LEN, 4, 16, 4}, uf[4] = {1, 1, 1, 1};
        Oid ut[4] = {OID_BYTEA, OID_INT4, OID_UUID, OID_INT4};
        PGresult *u = PQexecParams(pg,
                                   "UPDATE waybill SET dek_wrapped = $1, kek_version = $2 "
                                   "WHERE id = $3 AND kek_version = $4",
                                   4, ut, up, ul, uf, 0);
        if (PQresultStatus(u) != PGRES_COMMAND_OK) {
            PQclear(u);
            goto dberr;
        }
        if (strcmp(PQcmdTuples(u), "1") == 0)
            updated++;
        PQclear(u);
    }
    PQclear(r);
    r = PQexec(pg, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto dberr;
    seen = n;
    rw->done += updated;
    goto out;
dberr:
    fprintf(stderr, "%s" ME ": database: %s", nl, PQerrorMessage(pg));
fail:
    PQclear(r);
    r = PQexec(pg, "ROLLBACK");
out:
    PQclear(r);
    OPENSSL_cleanse(wrapped, sizeof wrapped);
    return seen;
}

static int keys_rewrap(const struct keys_opts *o)
{
    char err[512];
    struct gw_keyring *kr = NULL;
    struct rewrap rw = {.batch = o->batch, .tty = isatty(STDERR_FILENO) == 1};
    int rc = GW_CTL_FAIL;
    long long total, left = 0;

    if (gw_keyring_file_load(o->keyring, &kr, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    rw.kr = kr;
    rw.newest = gw_keyring_current(kr);
    if (!(rw.cx = gw_crypto_new())) {
        fprintf(stderr, ME ": cannot set up the cryptographic library\n");
        goto out;
    }
    if (!(rw.pg = connect_db(o->db)))
        goto out;
    total = count_where(rw.pg, "SELECT count(*) FROM waybill WHERE kek_version <> $1", rw.newest);
    if (total < 0)
        goto out;
    progress(rw.tty, 0, total);
    /* Passes over the table in id order; another pass picks up rows that were locked by a
     * concurrent writer (left over but not failed), until a pass changes nothing. */
    for (int pass = 0; pass < 100; pass++) {
        long long before = rw.done;
        memset(rw.cursor, 0, sizeof rw.cursor);
        rw.have_cursor = false;
        rw.failed = 0;
        for (;;) {
            long seen = rewrap_batch(&rw);
            if (seen < 0)
                goto out;
            progress(rw.tty, rw.done, total);
            if (seen == 0)
                break;
        }
        left =
            count_where(rw.pg, "SELECT count(*) FROM waybill WHERE kek_version <> $1", rw.newest);
        if (left < 0)
            goto out;
        if (left <= rw.failed || rw.done == before)
            break;
    }
    if (rw.tty)
        fputc('\n', stderr);
    fprintf(stderr,
            "rewrap: %lld data keys re-wrapped under KEK version %" PRIu32
            ", %lld failed, %lld records left on older versions%s\n",
            rw.done, rw.newest, rw.failed, left,
            left > rw.failed ? " (locked by other transactions: run rewrap again)" : "");
    rc = (rw.failed == 0 && left == 0) ? GW_CTL_OK : GW_CTL_FAIL;
out:
    PQfinish(rw.pg);
    gw_crypto_free(rw.cx);
    gw_keyring_free(kr);
    return rc;
}

int gw_ctl_keys(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"keyring", required_argument, NULL, 'k'}, {"db", required_argument, NULL, 'd'},
        {"version", required_argument, NULL, 'v'}, {"batch", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    struct keys_opts o = {.batch = BATCH_DEFAULT};
    bool db_given = false;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        keys_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    const char *sub = argv[1];
    optind = 0; /* glibc: full re-initialisation (the command may run more than once in tests) */
    while ((c = getopt_long(argc - 1, argv + 1, "k:d:v:b:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o.keyring = optarg;
            break;
        case 'd':
            o.db = optarg;
            db_given = true;
            break;
        case 'v':
            if (parse_u32(optarg, &o.version) != 0) {
                fprintf(stderr, ME ": --version must be an integer from 1 to %u\n",
                        GW_KEYRING_MAX_VERSION);
                return GW_CTL_USAGE;
            }
            o.has_version = true;
            break;
        case 'b': {
            char *end = NULL;
            o.batch = strtol(optarg, &end, 10);
            if (*end != '\0' || o.batch < 1 || o.batch > BATCH_MAX) {
                fprintf(stderr, ME ": --batch must be an integer from 1 to %d\n", BATCH_MAX);
                return GW_CTL_USAGE;
            }
            break;
        }
        case 'h':
            keys_usage(stdout);
            return GW_CTL_OK;
        default:
            keys_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind < argc - 1) {
        fprintf(stderr, ME ": unexpected argument '%s'\n", argv[optind + 1]);
        return GW_CTL_USAGE;
    }
    if (!o.keyring || !o.keyring[0])
        o.keyring = getenv("WAYGATE_KEYRING");
    if (!o.keyring || !o.keyring[0]) {
        fprintf(stderr, ME ": give --keyring PATH (or set WAYGATE_KEYRING)\n");
        return GW_CTL_USAGE;
    }
    bool needs_db = strcmp(sub, "rewrap") == 0;
    if (!o.db && (needs_db || strcmp(sub, "retire") == 0)) {
        const char *env = getenv("WAYGATE_PGURI");
        if (env && env[0])
            o.db = env;
    }
    if (strcmp(sub, "init") == 0)
        return keys_init(&o);
    if (strcmp(sub, "rotate") == 0)
        return keys_rotate(&o);
    if (strcmp(sub, "status") == 0)
        return keys_status(&o, db_given);
    if (strcmp(sub, "retire") == 0) {
        if (!o.has_version) {
            fprintf(stderr, ME ": retire needs --version N\n");
            return GW_CTL_USAGE;
        }
        return keys_retire(&o);
    }
    if (needs_db) {
        if (!o.db) {
            fprintf(stderr, ME ": rewrap needs --db CONNINFO (or WAYGATE_PGURI)\n");
            return GW_CTL_USAGE;
        }
        return keys_rewrap(&o);
    }
    fprintf(stderr, ME ": unknown subcommand '%s'\n", sub);
    keys_usage(stderr);
    return GW_CTL_USAGE;
}
