/* test_ctl_keys.c: `waygatectl keys rewrap` and `keys retire --db` against a throwaway PostgreSQL
 * with the real migrations: records sealed under KEK v1, rotate, retire refused, rewrap in
 * batches (field ciphertexts untouched), locked rows left for a rerun, a moved wrapped key
 * reported, retire allowed, every record still opens; retire against late writers (one in flight
 * at the count, a gateway never reloaded: sql/033); two copies of a key file rotated apart, and a
 * retire against a database that never met the key (sql/036). Skips when PostgreSQL is not
 * installed, except test_rotate_and_retire_need_the_database and test_add_suite_needs_the_database
 * (no database at all). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <openssl/rand.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto.h"
#include "ctl.h"
#include "keyring.h"
#include "pg_harness.h"
#include "record.h"

#define NREC 1234

struct fx {
    struct pgh pg;
    char dir[64], keyring[128];
    char nodb_keyring[128]; /* the key file of the tests that need no database */
    PGconn *conn;
    struct gw_crypto *cx;
};

static struct fx F;

static int ctl(const char *a0, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    argv[argc++] = (char *)a0;
    va_start(ap, a0);
    for (char *s; argc < 15 && (s = va_arg(ap, char *)) != NULL;)
        argv[argc++] = s;
    va_end(ap);
    argv[argc] = NULL;
    if (strcmp(a0, "migrate") == 0)
        return gw_ctl_migrate(argc, argv);
    return gw_ctl_keys(argc, argv);
}

static int group_setup(void **state)
{
    (void)state;
    if (!pgh_available())
        return 0;
    if (pgh_init(&F.pg) != 0)
        return -1;
    snprintf(F.dir, sizeof F.dir, "/tmp/gw-ctlkeys-XXXXXX");
    if (!mkdtemp(F.dir))
        return -1;
    snprintf(F.keyring, sizeof F.keyring, "%s/keyring", F.dir);
    if (ctl("migrate", "--db", F.pg.conninfo, NULL) != 0)
        return -1;
    F.conn = PQconnectdb(F.pg.conninfo);
    F.cx = gw_crypto_new();
    return PQstatus(F.conn) == CONNECTION_OK && F.cx ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    PQfinish(F.conn);
    gw_crypto_free(F.cx);
    pgh_destroy(&F.pg);
    if (F.dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", F.dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(F.conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(F.conn));
    PQclear(r);
}

static long long scalar(const char *sql)
{
    PGresult *r = PQexec(F.conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(F.conn));
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static char *text_scalar(const char *sql)
{
    static char buf[128];
    PGresult *r = PQexec(F.conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(F.conn));
    snprintf(buf, sizeof buf, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

static void name_of(const uint8_t id[16], char out[64])
{
    int n = snprintf(out, 64, "name-");
    for (int i = 0; i < 16; i++)
        n += snprintf(out + n, 64 - (size_t)n, "%02x", id[i]);
}

/* n records of suite sealed under kr's current KEK version (one field: sender_name_ct) on
 * connection c, in its transaction: 0, or -1 when the database refused one (its SQLSTATE in
 * state). */
static int insert_with(PGconn *c, const struct gw_keyring *kr, enum gw_suite suite, int n,
                       char state[6])
{
    uint32_t v = gw_keyring_current(kr, suite);
    state[0] = '\0';
    for (int i = 0; i < n; i++) {
        uint8_t id[16], bidx[16], mac[32], dek[32], w[GW_CRYPTO_WRAPPED_DEK_LEN], ct[128];
        char name[64];
        size_t ctn = 0;
        struct gw_crypto_aad aad;
        assert_int_equal(RAND_bytes(id, 16), 1);
        assert_int_equal(RAND_bytes(bidx, 16), 1);
        memset(mac, 0, sizeof mac);
        name_of(id, name);
        assert_int_equal(gw_crypto_dek_new(F.cx, dek), 0);
        assert_int_equal(gw_keyring_wrap(kr, F.cx, suite, v, GW_RECORD_TABLE, id, dek, w), 0);
        assert_int_equal(
            gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[GW_COL_SENDER_NAME], id, 1), 0);
        assert_int_equal(gw_crypto_seal_into(F.cx, suite, dek, aad.b, aad.n, (const uint8_t *)name,
                                             strlen(name), ct, sizeof ct, &ctn),
                         0);
        uint32_t vn = htonl(v);
        const char *p[6] = {(char *)id, (char *)bidx, (char *)&vn,
                            (char *)w,  (char *)mac,  (char *)ct};
        int l[6] = {16, 16, 4, (int)sizeof w, 32, (int)ctn}, f[6] = {1, 1, 1, 1, 1, 1};
        PGresult *r = PQexecParams(c,
                                   "INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by,"
                                   " kek_version, dek_version, dek_wrapped, content_mac,"
                                   " sender_name_ct) VALUES ($1::uuid, $2, 'a', 'test',"
                                   " $3::int4, 1, $4, $5, $6)",
                                   6, NULL, p, l, f, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(state, 6, "%s", st ? st : "");
            PQclear(r);
            return -1;
        }
        PQclear(r);
    }
    return 0;
}

/* n records of suite sealed under its current KEK version (one field: sender_name_ct). */
static void insert_records(enum gw_suite suite, int n)
{
    struct gw_keyring *kr = NULL;
    char err[256], state[6];
    assert_int_equal(gw_keyring_file_load(F.keyring, &kr, err, sizeof err), 0);
    exec_ok("BEGIN");
    if (insert_with(F.conn, kr, suite, n, state) != 0)
        fail_msg("insert: %s", PQerrorMessage(F.conn));
    exec_ok("COMMIT");
    gw_keyring_free(kr);
}

/* Every record (that matches the SQL condition where: there are nrec) has a data key that
 * unwraps under its suite and KEK version and opens its field. */
static void check_all_open_in(const char *keyring, const char *where, int nrec)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT id, kek_version, dek_version, dek_wrapped, sender_name_ct FROM waybill "
             "WHERE %s",
             where);
    struct gw_keyring *kr = NULL;
    char err[256];
    assert_int_equal(gw_keyring_file_load(keyring, &kr, err, sizeof err), 0);
    PGresult *r = PQexecParams(F.conn, sql, 0, NULL, NULL, NULL, NULL, 1);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), nrec);
    for (int i = 0; i < PQntuples(r); i++) {
        const uint8_t *id = (const uint8_t *)PQgetvalue(r, i, 0);
        uint32_t kv, dv;
        memcpy(&kv, PQgetvalue(r, i, 1), 4);
        memcpy(&dv, PQgetvalue(r, i, 2), 4);
        uint8_t dek[32], pt[128];
        size_t n = 0;
        char name[64];
        struct gw_crypto_aad aad;
        assert_int_equal(gw_keyring_unwrap(kr, F.cx, ntohl(kv), GW_RECORD_TABLE, id,
                                           (const uint8_t *)PQgetvalue(r, i, 3),
                                           (size_t)PQgetlength(r, i, 3), dek),
                         0);
        assert_int_equal(gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[GW_COL_SENDER_NAME],
                                             id, ntohl(dv)),
                         0);
        enum gw_suite suite;
        assert_int_equal(gw_crypto_sealed_suite((const uint8_t *)PQgetvalue(r, i, 3),
                                                (size_t)PQgetlength(r, i, 3), &suite),
                         0);
        assert_int_equal(gw_crypto_open_into(F.cx, suite, dek, aad.b, aad.n,
                                             (const uint8_t *)PQgetvalue(r, i, 4),
                                             (size_t)PQgetlength(r, i, 4), pt, sizeof pt, &n),
                         0);
        name_of(id, name);
        assert_int_equal(n, strlen(name));
        assert_memory_equal(pt, name, n);
    }
    PQclear(r);
    gw_keyring_free(kr);
}

static void check_all_open(const char *where, int nrec)
{
    check_all_open_in(F.keyring, where, nrec);
}

#define FIELDS_DIGEST "SELECT md5(string_agg(sender_name_ct, ''::bytea ORDER BY id)) FROM waybill"

static void test_rewrap_flow(void **state)
{
    (void)state;
    if (!F.conn)
        skip();
    char digest[64], v[8];
    assert_int_equal(ctl("keys", "init", "--keyring", F.keyring, NULL), 0);
    insert_records(GW_SUITE_AES, NREC);
    snprintf(digest, sizeof digest, "%s", text_scalar(FIELDS_DIGEST));

    assert_int_equal(ctl("keys", "rotate", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL), 0);
    /* retire refused while records use v1 */
    assert_int_equal(ctl("keys", "retire", "--keyring", F.keyring, "--version", "1", "--db",
                         F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    assert_int_equal(ctl("keys", "status", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL), 0);

    /* a row locked by another transaction is skipped, and left for a rerun */
    PGconn *other = PQconnectdb(F.pg.conninfo);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    PGresult *r = PQexec(other, "BEGIN");
    PQclear(r);
    /* (not "OFFSET 700 ... FOR UPDATE": that locks the 700 skipped rows too) */
    r = PQexec(other, "SELECT id FROM waybill WHERE id = (SELECT id FROM waybill ORDER BY id "
                      "OFFSET 700 LIMIT 1) FOR UPDATE");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    assert_int_equal(ctl("keys", "rewrap", "--keyring", F.keyring, "--db", F.pg.conninfo, "--batch",
                         "500", NULL),
                     GW_CTL_FAIL);
    assert_int_equal(scalar("SELECT count(*) FROM waybill WHERE kek_version = 1"), 1);
    r = PQexec(other, "COMMIT");
    PQclear(r);
    PQfinish(other);
    /* rerun: resumes with what is left */
    assert_int_equal(ctl("keys", "rewrap", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL), 0);
    assert_int_equal(scalar("SELECT count(*) FROM waybill WHERE kek_version = 2"), NREC);
    assert_string_equal(text_scalar(FIELDS_DIGEST), digest); /* fields untouched */
    /* nothing left: a no-op */
    assert_int_equal(ctl("keys", "rewrap", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL), 0);
    assert_int_equal(ctl("keys", "retire", "--keyring", F.keyring, "--version", "1", "--db",
                         F.pg.conninfo, NULL),
                     0);
    check_all_open("true", NREC);

    /* a wrapped key moved to another record is reported, not re-wrapped, and not lost */
    assert_int_equal(ctl("keys", "rotate", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL), 0);
    exec_ok("UPDATE waybill SET dek_wrapped = (SELECT dek_wrapped FROM waybill ORDER BY id "
            "LIMIT 1) WHERE id = (SELECT id FROM waybill ORDER BY id OFFSET 10 LIMIT 1)");
    assert_int_equal(ctl("keys", "rewrap", "--keyring", F.keyring, "--db", F.pg.conninfo, "--batch",
                         "100", NULL),
                     GW_CTL_FAIL);
    assert_int_equal(scalar("SELECT count(*) FROM waybill WHERE kek_version = 2"), 1);
    assert_int_equal(scalar("SELECT count(*) FROM waybill WHERE kek_version = 3"), NREC - 1);
    snprintf(v, sizeof v, "2");
    assert_int_equal(
        ctl("keys", "retire", "--keyring", F.keyring, "--version", v, "--db", F.pg.conninfo, NULL),
        GW_CTL_FAIL);
    assert_string_equal(text_scalar(FIELDS_DIGEST), digest);
    /* usage errors */
    assert_int_equal(
        ctl("keys", "rewrap", "--keyring", F.keyring, "--db", F.pg.conninfo, "--batch", "0", NULL),
        GW_CTL_USAGE);
    assert_int_equal(ctl("keys", "retire", "--keyring", F.keyring, NULL), GW_CTL_USAGE);
}

#define NSM 50
#define AES_FIELDS                                                                                 \
    "SELECT md5(string_agg(sender_name_ct || dek_wrapped, ''::bytea ORDER BY id)) FROM waybill "   \
    "WHERE get_byte(dek_wrapped, 1) = 1"

/* Issue 11: a key file of both suites; rotate, rewrap and retire act on one suite, and a rewrap
 * never moves a record into the other suite (runs after test_rewrap_flow, on its records). */
static void test_suites(void **state)
{
    (void)state;
    if (!F.conn)
        skip();
    char digest[64];
    long long aes = scalar("SELECT count(*) FROM waybill");
    assert_int_equal(ctl("keys", "add-suite", "--keyring", F.keyring, NULL), GW_CTL_USAGE);
    assert_int_equal(ctl("keys", "add-suite", "--keyring", F.keyring, "--suite", "sm4", NULL),
                     GW_CTL_USAGE);
    assert_int_equal(ctl("keys", "add-suite", "--keyring", F.keyring, "--suite", "sm", "--db",
                         F.pg.conninfo, NULL),
                     0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 'ctl' AND action = "
                            "'key.add_suite' AND outcome = 'ok'"),
                     1);
    assert_int_equal(ctl("keys", "add-suite", "--keyring", F.keyring, "--suite", "sm", "--db",
                         F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    insert_records(GW_SUITE_SM, NSM);
    snprintf(digest, sizeof digest, "%s", text_scalar(AES_FIELDS));
    assert_int_equal(ctl("keys", "status", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL), 0);
    /* the sm suite's own versions: rotate it, rewrap it */
    assert_int_equal(
        ctl("keys", "rotate", "--keyring", F.keyring, "--suite", "sm", "--db", F.pg.conninfo, NULL),
        0);
    assert_int_equal(ctl("keys", "rewrap", "--keyring", F.keyring, "--suite", "sm", "--db",
                         F.pg.conninfo, "--batch", "7", NULL),
                     0);
    assert_int_equal(
        scalar(
            "SELECT count(*) FROM waybill WHERE get_byte(dek_wrapped, 1) = 2 AND kek_version = 2"),
        NSM);
    /* the aes records stayed aes, untouched (their wrapped keys included) */
    assert_int_equal(scalar("SELECT count(*) FROM waybill WHERE get_byte(dek_wrapped, 1) = 1"),
                     aes);
    assert_string_equal(text_scalar(AES_FIELDS), digest);
    /* retire per suite: sm 1 has no record left; aes 2 still has one (the moved key) */
    assert_int_equal(ctl("keys", "retire", "--keyring", F.keyring, "--suite", "sm", "--version",
                         "1", "--db", F.pg.conninfo, NULL),
                     0);
    assert_int_equal(ctl("keys", "retire", "--keyring", F.keyring, "--suite", "aes", "--version",
                         "2", "--db", F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    /* without --suite, a file of both suites means aes */
    assert_int_equal(ctl("keys", "rotate", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL), 0);
    struct gw_keyring *kr = NULL;
    char err[256];
    assert_int_equal(gw_keyring_file_load(F.keyring, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 4);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_SM), 2);
    gw_keyring_free(kr);
    /* rewrap of the aes suite leaves the sm records alone (the moved key still fails) */
    assert_int_equal(ctl("keys", "rewrap", "--keyring", F.keyring, "--db", F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    assert_int_equal(
        scalar(
            "SELECT count(*) FROM waybill WHERE get_byte(dek_wrapped, 1) = 2 AND kek_version = 2"),
        NSM);
    check_all_open("get_byte(dek_wrapped, 1) = 2", NSM);
}

/* The SQLSTATE of the database's answer to rows inserted into waybill, in a transaction rolled
 * back: "" when they were stored. rows: "(kek_version, 'hex of dek_wrapped')" tuples, comma
 * separated; the other columns are filler. The primary message, when refused, into msg. */
static const char *insert_rows_state(const char *rows, char *msg, size_t msglen)
{
    static char st[6];
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by, kek_version,"
             " dek_version, dek_wrapped, content_mac) SELECT gen_random_uuid(),"
             " decode(md5(random()::text), 'hex'), 'a', 'test', v, 1, decode(d, 'hex'),"
             " decode(repeat('00', 32), 'hex') FROM (VALUES %s) AS t (v, d)",
             rows);
    exec_ok("BEGIN");
    PGresult *r = PQexec(F.conn, sql);
    const char *e = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(st, sizeof st, "%s", PQresultStatus(r) == PGRES_COMMAND_OK ? "" : e ? e : "?");
    snprintf(msg, msglen, "%s", m ? m : "");
    PQclear(r);
    exec_ok("ROLLBACK");
    return st;
}

/* keys retire against writers still sealing under the version it erases (sql/033): one in flight
 * at the count, and a gateway whose keyring was never reloaded. Retire used to count and then
 * erase with nothing in between: the in-flight record was not counted, the stale gateway's next
 * one was stored under the erased KEK, and both were lost with it. Runs last, on a table and a
 * key file of its own. */
static void test_retire_refuses_late_writers(void **state)
{
    (void)state;
    if (!F.conn)
        skip();
    char path[160], err[256], st[6];
    struct gw_keyring *stale = NULL;
    snprintf(path, sizeof path, "%s/keyring-late", F.dir);
    exec_ok("DELETE FROM waybill");
    exec_ok("DELETE FROM kek_retired");
    exec_ok("DELETE FROM kek_version"); /* a key file of its own: the others' keys forgotten */
    assert_int_equal(ctl("keys", "init", "--keyring", path, NULL), 0);
    /* a gateway's keys: loaded before the rotation, never reloaded */
    assert_int_equal(gw_keyring_file_load(path, &stale, err, sizeof err), 0);
    exec_ok("BEGIN");
    assert_int_equal(insert_with(F.conn, stale, GW_SUITE_AES, 5, st), 0);
    exec_ok("COMMIT");
    assert_int_equal(ctl("keys", "rotate", "--keyring", path, "--db", F.pg.conninfo, NULL), 0);
    assert_int_equal(ctl("keys", "rewrap", "--keyring", path, "--db", F.pg.conninfo, NULL), 0);

    /* a writer in flight: its record under version 1 is not committed at the retire, which
     * waits for it (5 s at most) and erases nothing */
    PGconn *other = PQconnectdb(F.pg.conninfo);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    PQclear(PQexec(other, "BEGIN"));
    assert_int_equal(insert_with(other, stale, GW_SUITE_AES, 1, st), 0);
    assert_int_equal(
        ctl("keys", "retire", "--keyring", path, "--version", "1", "--db", F.pg.conninfo, NULL),
        GW_CTL_FAIL);
    /* the writer commits while a retire waits for it: the retire counts it (the table is locked
     * before the count, not only by the constraint's ALTER TABLE after it) */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc =
            ctl("keys", "retire", "--keyring", path, "--version", "1", "--db", F.pg.conninfo, NULL);
        fflush(NULL);
        _exit(rc);
    }
    long long waiting = 0; /* the child's start, under ASan on a loaded machine: 60 s at most */
    for (int i = 0; i < 1200 && waiting == 0; i++) {
        usleep(50000);
        waiting = scalar("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                         "'waybill'::regclass");
    }
    assert_int_equal(waiting, 1);
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    int wst;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), GW_CTL_FAIL);
    /* committed, it is counted: refused, nothing recorded */
    assert_int_equal(
        ctl("keys", "retire", "--keyring", path, "--version", "1", "--db", F.pg.conninfo, NULL),
        GW_CTL_FAIL);
    assert_int_equal(scalar("SELECT count(*) FROM kek_retired"), 0);
    assert_int_equal(ctl("keys", "rewrap", "--keyring", path, "--db", F.pg.conninfo, NULL), 0);
    assert_int_equal(
        ctl("keys", "retire", "--keyring", path, "--version", "1", "--db", F.pg.conninfo, NULL), 0);
    assert_int_equal(scalar("SELECT count(*) FROM kek_retired WHERE suite = 1 AND version = 1"), 1);

    /* the gateway never reloaded: its next record under the retired version is refused, so
     * nothing it acknowledges is sealed under a key that no longer exists */
    exec_ok("BEGIN");
    assert_int_equal(insert_with(F.conn, stale, GW_SUITE_AES, 1, st), -1);
    assert_string_equal(st, "55000");
    exec_ok("ROLLBACK");
    /* the rule is the pair: version 1 of the other suite, and version 2 of this one, are live;
     * a wrapped key too short to name a suite is under no pair (kek_retire never counts one);
     * one row under the retired pair refuses its whole statement */
    char msg[256];
    assert_string_equal(insert_rows_state("(1, '0002')", msg, sizeof msg), "");
    assert_string_equal(insert_rows_state("(2, '0001')", msg, sizeof msg), "");
    assert_string_equal(insert_rows_state("(1, '01'), (1, '')", msg, sizeof msg), "");
    assert_string_equal(insert_rows_state("(1, '0001')", msg, sizeof msg), "55000");
    assert_non_null(strstr(msg, "KEK version 1 of suite aes is retired"));
    assert_non_null(strstr(msg, "reload the keyring"));
    assert_string_equal(
        insert_rows_state("(2, '0001'), (1, '000100'), (1, '0002')", msg, sizeof msg), "55000");
    /* so is a rewrap or re-seal that would write it back under the version */
    PGresult *r = PQexec(F.conn, "UPDATE waybill SET kek_version = 1 WHERE id = (SELECT id FROM "
                                 "waybill ORDER BY id LIMIT 1)");
    const char *ust = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    assert_non_null(ust);
    assert_string_equal(ust, "55000");
    PQclear(r);
    /* run again: done already, still done */
    assert_int_equal(
        ctl("keys", "retire", "--keyring", path, "--version", "1", "--db", F.pg.conninfo, NULL), 0);
    /* every record stored opens under the key file whose version 1 is erased */
    check_all_open_in(path, "true", 6);
    gw_keyring_free(stale);
}

/* The state of KEK version v of suite in the key file at path (its own copy loaded): 1 active,
 * 0 retired, -1 absent. */
static int kek_in_file(const char *path, enum gw_suite suite, uint32_t v)
{
    char err[256];
    struct gw_keyring *kr = NULL;
    int state = -1;
    assert_int_equal(gw_keyring_file_load(path, &kr, err, sizeof err), 0);
    for (size_t i = 0; i < gw_keyring_kek_count(kr, suite); i++)
        if (gw_keyring_kek_at(kr, suite, i).version == v)
            state = gw_keyring_kek_at(kr, suite, i).active;
    gw_keyring_free(kr);
    return state;
}

/* Art. 36 (sql/036_kek_version.sql): the database knows which key each KEK version is. Two
 * copies of one key file rotated apart give version 2 two keys: the second copy is refused by
 * every keys command that uses the database (rotate before it makes its version, rewrap, status),
 * and the first one's check value stays. A retire against a database that never met the key it
 * would erase is refused, and the key stays in the file. Runs after the late writers' test, on
 * key files of its own. */
static void test_kek_versions_known(void **state)
{
    (void)state;
    if (!F.conn)
        skip();
    char a[160], b[160], c[160], cmd[400], err[256], first[128];
    uint32_t v = 0;
    snprintf(a, sizeof a, "%s/keyring-kv-a", F.dir);
    snprintf(b, sizeof b, "%s/keyring-kv-b", F.dir);
    snprintf(c, sizeof c, "%s/keyring-kv-c", F.dir);
    exec_ok("DELETE FROM waybill");
    exec_ok("DELETE FROM kek_retired");
    exec_ok("DELETE FROM kek_version");
    assert_int_equal(ctl("keys", "init", "--keyring", a, NULL), 0);
    snprintf(cmd, sizeof cmd, "cp -p '%s' '%s'", a, b);
    assert_int_equal(system(cmd), 0);

    /* copy a rotates with the database: versions 1 and 2 registered, the first writer's kept */
    assert_int_equal(ctl("keys", "rotate", "--keyring", a, "--db", F.pg.conninfo, NULL), 0);
    assert_int_equal(scalar("SELECT count(*) FROM kek_version WHERE suite = 1"), 2);
    snprintf(first, sizeof first, "%s",
             text_scalar("SELECT encode(check_value, 'hex') FROM kek_version WHERE suite = 1 "
                         "AND version = 2"));
    /* copy b would make a second version 2: refused before its file changes */
    assert_int_equal(ctl("keys", "rotate", "--keyring", b, "--db", F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    assert_int_equal(kek_in_file(b, GW_SUITE_AES, 2), -1);
    /* rotated apart all the same (no database at hand): its version 2 is refused wherever it
     * meets the database, and the stored check value is a's */
    assert_int_equal(gw_keyring_file_rotate(b, GW_SUITE_AES, &v, err, sizeof err), 0);
    assert_int_equal(v, 2);
    assert_int_equal(ctl("keys", "rewrap", "--keyring", b, "--db", F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    assert_int_equal(ctl("keys", "status", "--keyring", b, "--db", F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    assert_int_equal(
        ctl("keys", "retire", "--keyring", b, "--version", "1", "--db", F.pg.conninfo, NULL),
        GW_CTL_FAIL);
    assert_int_equal(kek_in_file(b, GW_SUITE_AES, 1), 1);
    assert_string_equal(text_scalar("SELECT encode(check_value, 'hex') FROM kek_version WHERE "
                                    "suite = 1 AND version = 2"),
                        first);
    assert_int_equal(ctl("keys", "rewrap", "--keyring", a, "--db", F.pg.conninfo, NULL), 0);

    /* a key file this database never met (its sm suite): retiring its version 1 is refused,
     * although no record is under it here, and the key stays in the file */
    assert_int_equal(ctl("keys", "init", "--suite", "sm", "--keyring", c, NULL), 0);
    assert_int_equal(gw_keyring_file_rotate(c, GW_SUITE_SM, &v, err, sizeof err), 0);
    assert_int_equal(ctl("keys", "retire", "--keyring", c, "--suite", "sm", "--version", "1",
                         "--db", F.pg.conninfo, NULL),
                     GW_CTL_FAIL);
    assert_int_equal(kek_in_file(c, GW_SUITE_SM, 1), 1);
    assert_int_equal(scalar("SELECT count(*) FROM kek_version WHERE suite = 2 AND version = 1"), 0);
    assert_int_equal(scalar("SELECT count(*) FROM kek_retired"), 0);
    /* once a use of the key file registered it (a rewrap here; a gateway's start), it goes */
    assert_int_equal(
        ctl("keys", "rewrap", "--keyring", c, "--suite", "sm", "--db", F.pg.conninfo, NULL), 0);
    assert_int_equal(ctl("keys", "retire", "--keyring", c, "--suite", "sm", "--version", "1",
                         "--db", F.pg.conninfo, NULL),
                     0);
    assert_int_equal(kek_in_file(c, GW_SUITE_SM, 1), 0);
}

/* The whole of the file at path into buf (at most cap bytes); its length, or -1. */
static long slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f)
        return -1;
    n = fread(buf, 1, cap, f);
    fclose(f);
    return (long)n;
}

/* Runs `keys SUB --keyring <its key file> [EXTRA1 EXTRA2]` with stderr into the file errpath;
 * returns its exit code. */
static int ctl_err(const char *errpath, const char *sub, const char *extra1, const char *extra2)
{
    int saved, fd, rc;
    fflush(stderr);
    saved = dup(2);
    fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
    rc = ctl("keys", sub, "--keyring", F.nodb_keyring, extra1, extra2, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    return rc;
}

/* rotate and retire with no --db and no WAYGATE_PGURI: refused before the key file is touched,
 * naming the missing setting (they would go unrecorded, and retire could erase a KEK that still
 * wraps a record); init still works without a database (a keyring comes before its database).
 * Needs no PostgreSQL. */
static void test_rotate_and_retire_need_the_database(void **state)
{
    (void)state;
    char dir[] = "/tmp/gw-ctlkeys-nodb-XXXXXX", errpath[128], cmd[128];
    static char before[8192], after[8192], msg[1024];
    long nb, na, nm;
    assert_non_null(mkdtemp(dir));
    snprintf(F.nodb_keyring, sizeof F.nodb_keyring, "%s/keyring", dir);
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    assert_int_equal(unsetenv("WAYGATE_PGURI"), 0);
    assert_int_equal(ctl("keys", "init", "--keyring", F.nodb_keyring, NULL), 0);
    nb = slurp(F.nodb_keyring, before, sizeof before);
    assert_true(nb > 0 && (size_t)nb < sizeof before);

    assert_int_equal(ctl_err(errpath, "rotate", NULL, NULL), GW_CTL_USAGE);
    nm = slurp(errpath, msg, sizeof msg - 1);
    assert_true(nm > 0);
    msg[nm] = '\0';
    assert_non_null(strstr(msg, "keys rotate needs the database: give --db CONNINFO or set "
                                "WAYGATE_PGURI"));
    assert_int_equal(ctl_err(errpath, "retire", "--version", "1"), GW_CTL_USAGE);
    nm = slurp(errpath, msg, sizeof msg - 1);
    assert_true(nm > 0);
    msg[nm] = '\0';
    assert_non_null(strstr(msg, "keys retire needs the database: give --db CONNINFO or set "
                                "WAYGATE_PGURI"));
    assert_non_null(strstr(msg, "no record still uses the version"));
    /* the key file is byte for byte what init wrote: no KEK added, none erased */
    na = slurp(F.nodb_keyring, after, sizeof after);
    assert_int_equal(na, nb);
    assert_memory_equal(after, before, (size_t)nb);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* add-suite with no --db and no WAYGATE_PGURI: refused like rotate, before the key file is
 * touched (a new suite's keys, a new audit signing key among them, would go unrecorded). Needs
 * no PostgreSQL. */
static void test_add_suite_needs_the_database(void **state)
{
    (void)state;
    char dir[] = "/tmp/gw-ctlkeys-nodb-XXXXXX", errpath[128], cmd[128];
    static char before[8192], after[8192], msg[1024];
    long nb, na, nm;
    assert_non_null(mkdtemp(dir));
    snprintf(F.nodb_keyring, sizeof F.nodb_keyring, "%s/keyring", dir);
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    assert_int_equal(unsetenv("WAYGATE_PGURI"), 0);
    assert_int_equal(ctl("keys", "init", "--keyring", F.nodb_keyring, NULL), 0);
    nb = slurp(F.nodb_keyring, before, sizeof before);
    assert_true(nb > 0 && (size_t)nb < sizeof before);

    assert_int_equal(ctl_err(errpath, "add-suite", "--suite", "sm"), GW_CTL_USAGE);
    nm = slurp(errpath, msg, sizeof msg - 1);
    assert_true(nm > 0);
    msg[nm] = '\0';
    assert_non_null(strstr(msg, "keys add-suite needs the database: give --db CONNINFO or set "
                                "WAYGATE_PGURI"));
    assert_non_null(strstr(msg, "nothing was changed"));
    /* the key file is byte for byte what init wrote: no sm key set added */
    na = slurp(F.nodb_keyring, after, sizeof after);
    assert_int_equal(na, nb);
    assert_memory_equal(after, before, (size_t)nb);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotate_and_retire_need_the_database),
        cmocka_unit_test(test_add_suite_needs_the_database),
        cmocka_unit_test(test_rewrap_flow),
        cmocka_unit_test(test_suites),
        cmocka_unit_test(test_retire_refuses_late_writers),
        cmocka_unit_test(test_kek_versions_known),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
