/* test_config.c: the INI parser: a full and a minimal file, every refusal with its file, line,
 * key and rule, cross-field rules, host:port splitting, and allocation failure at every step.
 * Data files live in $WAYGATE_TEST_DATA/config (default: data/config). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "alloc.h"
#include "config.h"

static char datadir[4096];

static const char *data(const char *name)
{
    static char path[8192];
    snprintf(path, sizeof(path), "%s/%s", datadir, name);
    return path;
}

static int setup(void **state)
{
    const char *d = getenv("WAYGATE_TEST_DATA");
    (void)state;
    snprintf(datadir, sizeof(datadir), "%s/config", d != NULL ? d : "data");
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void test_good(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(gw_config_load(data("good.conf"), &c, err, sizeof(err)), 0);
    assert_string_equal(c.listen, "0.0.0.0:8443");
    assert_true(c.insecure_loopback_only);
    assert_string_equal(c.insecure_listen, "127.0.0.1:8080"); /* inline comment stripped */
    assert_int_equal(c.max_connections, 2000);
    assert_int_equal(c.max_concurrent_streams, 50);
    assert_int_equal(c.max_header_list_size, 8192);
    assert_int_equal(c.max_message_size, 1048576);
    assert_int_equal(c.handshake_timeout_ms, 5000);
    assert_int_equal(c.preauth_timeout_ms, 2000);
    assert_int_equal(c.max_preauth_connections, 500);
    assert_int_equal(c.max_preauth_per_address, 8);
    assert_int_equal(c.max_connections_per_certificate, 50);
    assert_int_equal(c.request_memory_per_certificate, 100000000);
    assert_int_equal(c.response_memory_per_certificate, 50000000);
    assert_int_equal(c.accept_rate_per_address, 16);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(c.drain_timeout_ms, 2000);
    assert_int_equal(c.max_deadline_ms, 30000);
    assert_true(ends_with(c.tls_cert, "/files/cert.pem")); /* relative to the file's directory */
    assert_true(ends_with(c.tls_key, "/files/key.pem"));   /* quoted */
    assert_true(ends_with(c.tls_client_ca, "/files/ca.pem"));
    assert_true(ends_with(c.tls_crl, "/files/crl.pem"));
    assert_int_equal(access(c.tls_cert, R_OK), 0);
    /* a quoted value keeps its '#' */
    assert_string_equal(c.db_conninfo,
                        "host=/run/postgresql dbname=waygate user=waygate application_name=gw#1");
    assert_int_equal(c.db_pool_size, 8);
    assert_int_equal(c.db_pipeline_depth, 16);
    assert_int_equal(c.db_queue_max, 100);
    assert_int_equal(c.db_connect_timeout_ms, 3000);
    assert_int_equal(c.db_reconnect_max_ms, 10000);
    assert_true(ends_with(c.keyring, "/files/keyring"));
    assert_int_equal(c.log_level, GW_LOG_DEBUG);
    assert_int_equal(c.crypto_suite, GW_CONFIG_SUITE_SM);
    assert_string_equal(c.audit_chain, "gw-east-1");
    assert_int_equal(c.checkpoint_every, 50);
    /* a file that need not exist yet, in a directory that does */
    assert_true(ends_with(c.audit_spool, "/files/waygated.spool"));
    assert_int_equal(c.checkpoint_ms, 2000);
    assert_int_equal(c.bulk_threshold, 5);
    assert_int_equal(c.retention_days, 0);
    assert_int_equal(c.lawful_default_s, 86400); /* at lawful_max_s: allowed */
    assert_int_equal(c.lawful_max_s, 86400);
    assert_int_equal(c.retention_batch, 500);
    gw_config_clear(&c);
    gw_config_clear(&c); /* idempotent */
}

static void test_defaults(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(gw_config_load(data("minimal.conf"), &c, err, sizeof(err)), 0);
    assert_string_equal(c.listen, "[::1]:8443");
    assert_false(c.insecure_loopback_only);
    assert_null(c.insecure_listen);
    assert_int_equal(c.max_connections, 1024);
    assert_int_equal(c.max_concurrent_streams, 100);
    assert_int_equal(c.max_header_list_size, 16384);
    assert_int_equal(c.max_message_size, 4 * 1024 * 1024);
    assert_int_equal(c.request_memory_per_connection, 64 * 1024 * 1024);
    assert_int_equal(c.request_memory, 512 * 1024 * 1024);
    assert_int_equal(c.request_memory_per_certificate, 64 * 1024 * 1024); /* one connection's */
    assert_int_equal(c.response_memory_per_connection, 8 * 1024 * 1024);
    assert_int_equal(c.response_memory, 256 * 1024 * 1024);
    assert_int_equal(c.response_memory_per_certificate, 32 * 1024 * 1024); /* an eighth */
    assert_int_equal(c.handshake_timeout_ms, 10000);
    assert_int_equal(c.preauth_timeout_ms, 3000);
    assert_int_equal(c.max_preauth_connections, 0);
    assert_int_equal(c.max_preauth_per_address, 32);
    assert_int_equal(c.max_connections_per_certificate, 0); /* an eighth of max_connections */
    assert_int_equal(c.accept_rate_per_address, 64);
    assert_int_equal(c.idle_timeout_ms, 300000);
    assert_int_equal(c.drain_timeout_ms, 10000);
    assert_int_equal(c.max_deadline_ms, 60000);
    assert_int_equal(c.segment_refresh_ms, 5000);
    assert_int_equal(c.incident_queue_max, 4096);
    assert_int_equal(c.lookup_throttle_principals, 65536);
    assert_int_equal(c.lookup_throttle_keys, 1u << 20);
    assert_null(c.tls_crl);
    assert_string_equal(c.db_conninfo, "postgresql://waygate@localhost/waygate");
    assert_int_equal(c.db_pool_size, 4);
    assert_int_equal(c.db_pipeline_depth, 8);
    assert_int_equal(c.db_queue_max, 4096);
    assert_int_equal(c.db_connect_timeout_ms, 5000);
    assert_int_equal(c.db_reconnect_max_ms, 5000);
    assert_int_equal(c.log_level, GW_LOG_INFO);
    assert_int_equal(c.crypto_suite, GW_CONFIG_SUITE_AES);
    assert_null(c.audit_chain); /* the daemon derives gw-<host>-<port> */
    assert_null(c.audit_spool); /* none: lost at shutdown, and the start says so */
    assert_int_equal(c.checkpoint_every, 1000);
    assert_int_equal(c.checkpoint_ms, 10000);
    assert_int_equal(c.bulk_threshold, 20);
    assert_int_equal(c.approval_ttl_s, 86400);
    assert_int_equal(c.lawful_default_s, 604800);
    assert_int_equal(c.lawful_max_s, 31536000);
    assert_int_equal(c.retention_days, 1095);
    assert_int_equal(c.retention_sweep_ms, 3600000);
    assert_int_equal(c.retention_batch, 500);
    assert_int_equal(c.fwd_breaker_after, 32);
    assert_int_equal(c.fwd_linger_ms, 10);
    assert_int_equal(gw_config_fwd_fast_wait_ms(&c), 15000); /* half of lease_ms 30000 */
    gw_config_clear(&c);
}

/* Loads a [forward] section (the data directory's certificate files) with `extra` lines. */
static int load_forward(const char *extra, struct gw_config *c, char *err, size_t errlen)
{
    char dir[] = "/tmp/gw-config-XXXXXX", path[256], ca[8192], cert[8192], key[8192];
    FILE *f;
    int rc;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/fwd.conf", dir);
    snprintf(ca, sizeof(ca), "%s", data("files/ca.pem"));
    snprintf(cert, sizeof(cert), "%s", data("files/cert.pem"));
    snprintf(key, sizeof(key), "%s", data("files/key.pem"));
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "[server]\nlisten = 127.0.0.1:8443\n[tls]\ncert = %s\nkey = %s\nclient_ca = %s\n"
            "[database]\nconninfo = dbname=waygate\n[keys]\nkeyring = %s\n"
            "[forward]\nendpoint = backend.example:9443\nca = %s\ncert = %s\nkey = %s\n%s",
            cert, key, ca, data("files/keyring"), ca, cert, key, extra);
    fclose(f);
    rc = gw_config_load(path, c, err, errlen);
    unlink(path);
    rmdir(dir);
    return rc;
}

/* [forward] linger_ms stays below how long a fast delivery may wait in memory (a linger at or
 * past it could never run its course: the forwarder cuts it at half that wait, counted from the
 * insert's sending): with lease_ms 7000 and deadline_ms 5000 that is lease_ms - deadline_ms -
 * 1000 = 1000 ms (bad_forward_linger.conf refuses 1000); 999 is taken, and any value without
 * the fast path. */
static void test_forward_linger(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(load_forward("deadline_ms = 5000\nlease_ms = 7000\nlinger_ms = 999\n", &c, err,
                                  sizeof(err)),
                     0);
    assert_int_equal(c.fwd_linger_ms, 999);
    assert_int_equal(gw_config_fwd_fast_wait_ms(&c), 1000);
    gw_config_clear(&c);
    assert_int_equal(load_forward("deadline_ms = 5000\nlease_ms = 7000\nlinger_ms = 5000\n"
                                  "fast = false\n",
                                  &c, err, sizeof(err)),
                     0);
    gw_config_clear(&c);
    assert_int_equal(load_forward("linger_ms = 0\n", &c, err, sizeof(err)), 0);
    assert_int_equal(c.fwd_linger_ms, 0);
    gw_config_clear(&c);
    assert_int_not_equal(load_forward("linger_ms = 600001\n", &c, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "[forward] linger_ms: out of range: must be between 0 and 600000"));
}

/* [server] request_memory_per_certificate, unset: an eighth of request_memory, and at least
 * request_memory_per_connection. */
static void test_request_memory_per_certificate_default(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(gw_config_load(data("request_memory_cert_eighth.conf"), &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.request_memory_per_certificate, 128 * 1024 * 1024);
    gw_config_clear(&c);
    assert_int_equal(gw_config_load(data("request_memory_cert_default.conf"), &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.request_memory_per_certificate, 16 * 1024 * 1024); /* not 8 MiB */
    gw_config_clear(&c);
}

/* [server] response_memory_per_certificate, unset: an eighth of response_memory, and at least
 * response_memory_per_connection. */
static void test_response_memory_per_certificate_default(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(gw_config_load(data("response_memory_cert_eighth.conf"), &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.response_memory_per_certificate, 128 * 1024 * 1024);
    gw_config_clear(&c);
    assert_int_equal(
        gw_config_load(data("response_memory_cert_default.conf"), &c, err, sizeof(err)), 0);
    assert_int_equal(c.response_memory_per_certificate, 16 * 1024 * 1024); /* not 8 MiB */
    gw_config_clear(&c);
}

/* [metrics] tls: HTTPS for system_admin certificates, so any address is allowed. */
static void test_metrics_tls(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(gw_config_load(data("good_metrics_tls.conf"), &c, err, sizeof(err)), 0);
    assert_string_equal(c.metrics_listen, "10.0.0.1:9464");
    assert_true(c.metrics_tls);
    gw_config_clear(&c);
    assert_int_equal(gw_config_load(data("minimal.conf"), &c, err, sizeof(err)), 0);
    assert_false(c.metrics_tls);
    gw_config_clear(&c);
}

/* TLS to a database on another host: the libpq keywords for it are accepted and kept as given. */
static void test_remote_tls_conninfo(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(gw_config_load(data("remote_tls.conf"), &c, err, sizeof(err)), 0);
    assert_string_equal(
        c.db_conninfo,
        "postgresql://waygate_gateway@db.example.net:5432/"
        "waygate?sslmode=verify-full&sslrootcert=/etc/waygate/pg-ca.crt&sslcert=/"
        "etc/waygate/pg.crt&sslkey=/etc/waygate/pg.key&passfile=/etc/waygate/pgpass");
    gw_config_clear(&c);
    assert_int_equal(gw_config_load(data("remote_tls_keywords.conf"), &c, err, sizeof(err)), 0);
    assert_string_equal(c.db_conninfo, "host=db.example.net port=5432 dbname=waygate "
                                       "user=waygate_gateway sslmode=verify-full "
                                       "sslrootcert=/etc/waygate/pg-ca.crt "
                                       "sslcert=/etc/waygate/pg.crt sslkey=/etc/waygate/pg.key "
                                       "sslcrl=/etc/waygate/pg.crl passfile=/etc/waygate/pgpass");
    gw_config_clear(&c);
}

struct bad {
    const char *file;
    int line;          /* 0: the message has no line (file-level) */
    const char *where; /* "[section] key" */
    const char *rule;
};

static const struct bad bads[] = {
    {"bad_unknown_section.conf", 11, "[serverx]", "unknown section"},
    {"bad_unknown_key.conf", 12, "[server] listn", "unknown key"},
    {"bad_duplicate_key.conf", 12, "[server] listen", "duplicate key (first set on line 2)"},
    {"bad_number.conf", 12, "[server] max_connections", "bad number"},
    {"bad_range.conf", 12, "[server] max_connections", "out of range: must be between 1 and"},
    {"bad_range_overflow.conf", 12, "[server] max_message_size", "out of range"},
    {"bad_bool.conf", 12, "[server] insecure_loopback_only", "must be true or false"},
    {"bad_missing_equals.conf", 12, "[server] max_connections", "missing '='"},
    {"bad_hostport.conf", 12, "[server] insecure_listen", "bad host:port"},
    {"bad_insecure_flag.conf", 12, "[server] insecure_listen",
     "requires insecure_loopback_only = true"},
    {"bad_insecure_host.conf", 13, "[server] insecure_listen", "must be a loopback address"},
    {"bad_level.conf", 12, "[log] level", "must be one of"},
    {"bad_suite.conf", 12, "[crypto] suite", "must be aes or sm"},
    {"bad_metrics_host.conf", 12, "[metrics] listen", "must be a loopback address"},
    {"bad_metrics_tls.conf", 12, "[metrics] tls", "requires [metrics] listen"},
    {"bad_worker_cgroup.conf", 13, "[auth] worker_cgroup", "must be an absolute path"},
    /* any N but a power of two fails every hash, the unknown account's stand-in included */
    {"bad_scrypt_n.conf", 12, "[auth] scrypt_n", "must be a power of two"},
    /* 72 characters: cut to 64 at start, two instances ending -node-a and -node-b shared one */
    {"bad_audit_chain.conf", 12, "[audit] chain", "must match ^[A-Za-z0-9._:@-]{1,64}$"},
    {"bad_audit_chain_ctl.conf", 12, "[audit] chain", "and not be \"ctl\""},
    {"bad_forward_cert.conf", 12, "[forward] cert", "required when endpoint is set"},
    {"bad_forward_lease.conf", 17, "[forward] lease_ms",
     "must exceed deadline_ms by at least 1100 ms"},
    {"bad_forward_linger.conf", 18, "[forward] linger_ms",
     "must be below 1000 ms with this lease_ms and deadline_ms"},
    {"bad_forward_breaker.conf", 16, "[forward] breaker_after",
     "out of range: must be between 0 and 1000000"},
    {"bad_path.conf", 12, "[tls] crl", "file cannot be read"},
    {"bad_spool_dir.conf", 12, "[audit] spool", "/no-such-dir cannot be used: it does not exist"},
    {"bad_spool_not_file.conf", 12, "[audit] spool", "must name a file, not a directory"},
    {"bad_spool_dir_given.conf", 12, "[audit] spool", "/files exists and is not a regular file"},
    {"bad_quote.conf", 12, "[database] pool_size", "unterminated quoted value"},
    {"bad_outside_section.conf", 1, "listen", "outside of any [section]"},
    {"bad_missing_required.conf", 0, "[keys] keyring", "required key is missing"},
    {"bad_password.conf", 8, "[database] conninfo", "use a passfile"},
    {"bad_password_uri.conf", 8, "[database] conninfo", "use a passfile"},
    {"bad_password_query.conf", 8, "[database] conninfo", "use a passfile"},
    {"bad_sslpassword.conf", 8, "[database] conninfo", "must not contain a password"},
    {"bad_conninfo.conf", 8, "[database] conninfo", "not a valid libpq connection string"},
    {"bad_preauth.conf", 13, "[server] max_preauth_connections", "must be below max_connections"},
    {"bad_cert_limit.conf", 13, "[server] max_connections_per_certificate",
     "must not be above max_connections"},
    {"bad_request_memory.conf", 13, "[server] request_memory_per_connection",
     "must be at least 10 x max_message_size"},
    {"bad_request_memory_total.conf", 13, "[server] request_memory",
     "must be at least request_memory_per_connection"},
    {"bad_request_memory_cert.conf", 15, "[server] request_memory_per_certificate",
     "must be between request_memory_per_connection and request_memory"},
    {"bad_request_memory_cert_total.conf", 13, "[server] request_memory_per_certificate",
     "must be between request_memory_per_connection and request_memory"},
    {"bad_response_memory_total.conf", 13, "[server] response_memory",
     "must be at least response_memory_per_connection"},
    {"bad_response_memory_cert.conf", 14, "[server] response_memory_per_certificate",
     "must be between response_memory_per_connection and response_memory"},
    {"bad_response_memory_cert_total.conf", 13, "[server] response_memory_per_certificate",
     "must be between response_memory_per_connection and response_memory"},
    /* lawful_max_s set below the default lawful_default_s */
    {"bad_lawful_max.conf", 12, "[compliance] lawful_max_s", "must not be below lawful_default_s"},
    {"bad_lawful_default.conf", 13, "[compliance] lawful_default_s",
     "must not be above lawful_max_s"},
};

static void check_refusal(const char *path, int line, const char *where, const char *rule)
{
    struct gw_config c;
    char err[512], want[8192];
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int rc;

    memset(&c, 0xff, sizeof(c)); /* failure must leave it zeroed */
    rc = gw_config_load(path, &c, err, sizeof(err));
    if (rc != GW_EINVAL)
        fail_msg("%s: expected GW_EINVAL, got %d (%s)", base, rc, err);
    assert_null(c.listen);
    assert_null(c.db_conninfo);
    if (line > 0)
        snprintf(want, sizeof(want), "%s:%d: %s: ", path, line, where);
    else
        snprintf(want, sizeof(want), "%s: %s: ", path, where);
    if (strstr(err, want) != err || strstr(err, rule) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\" or \"%s\"", base, err, want, rule);
    assert_null(strstr(err, "s3cretpw")); /* values never echoed */
    assert_null(strchr(err, '\n'));
}

static void test_bad_files(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
        check_refusal(data(bads[i].file), bads[i].line, bads[i].where, bads[i].rule);
}

static void test_long_line(void **state)
{
    char dir[] = "/tmp/gw-config-XXXXXX";
    char path[256];
    FILE *f;
    int i;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/long.conf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# first\n[database]\nconninfo = \"");
    for (i = 0; i < 4100; i++)
        fputc('x', f);
    fprintf(f, "\"\n");
    fclose(f);
    check_refusal(path, 3, "[database] conninfo", "line too long (over 4096 bytes)");
    unlink(path);

    /* exactly 4096 bytes is accepted (and then fails later for another reason) */
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[log]\n#");
    for (i = 0; i < 4095; i++)
        fputc('x', f);
    fprintf(f, "\r\n");
    fclose(f);
    check_refusal(path, 0, "[server] listen", "required key is missing");
    unlink(path);
    rmdir(dir);
}

static void test_no_file(void **state)
{
    struct gw_config c;
    char err[512];

    (void)state;
    assert_int_equal(gw_config_load(data("no-such.conf"), &c, err, sizeof(err)), GW_EIO);
    assert_non_null(strstr(err, "no-such.conf: cannot open"));
}

static void test_alloc_failures(void **state)
{
    struct gw_config c;
    char err[512];
    long n;
    int rc = -1;

    (void)state;
    for (n = 1; n < 200 && rc != 0; n++) {
        gw_alloc_fail_nth(n);
        rc = gw_config_load(data("good.conf"), &c, err, sizeof(err));
        if (rc != 0) {
            assert_int_equal(rc, GW_ENOMEM);
            assert_null(c.listen);
        }
    }
    gw_alloc_fail_nth(0);
    assert_int_equal(rc, 0);
    gw_config_clear(&c);
}

static void test_hostport(void **state)
{
    char host[64];
    uint16_t port;
    static const char *const bad[] = {
        "",        ":80",    "host:",  "host:0",   "host:65536", "host:8o",     "::1:80", "[::1]80",
        "[zz]:80", "a b:80", "[::1]:", "host:+80", "host",       "host:123456", "[]:80",  "h_x:80",
    };
    size_t i;

    (void)state;
    assert_int_equal(gw_config_split_hostport("127.0.0.1:8443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8443);
    assert_int_equal(gw_config_split_hostport("[::1]:65535", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    assert_int_equal(gw_config_split_hostport("gw-1.example.net:1", host, sizeof(host), &port), 0);
    assert_string_equal(host, "gw-1.example.net");
    assert_int_equal(port, 1);
    assert_int_equal(gw_config_split_hostport("localhost:80", host, 9, &port), GW_EINVAL);
    assert_int_equal(gw_config_split_hostport("localhost:80", host, 10, &port), 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (gw_config_split_hostport(bad[i], host, sizeof(host), &port) != GW_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
}

/* SIGHUP's comparison: a changed key nothing applies after the start is named (in the table's
 * order); a changed file the reload reads is not, and is what gw_config_take_reloaded moves into
 * the running config, leaving the other keys as they were. */
struct named {
    char keys[4][64];
    size_t n;
};

static void named_cb(void *arg, const char *section, const char *key)
{
    struct named *nm = arg;

    if (nm->n < 4)
        snprintf(nm->keys[nm->n], sizeof(nm->keys[0]), "[%s] %s", section, key);
    nm->n++;
}

static void test_reload_keys(void **state)
{
    struct gw_config run, next;
    struct named nm = {.n = 0};
    char err[512], *crl;

    (void)state;
    assert_int_equal(gw_config_load(data("good.conf"), &run, err, sizeof(err)), 0);
    assert_int_equal(gw_config_load(data("good.conf"), &next, err, sizeof(err)), 0);
    assert_int_equal(gw_config_restart_keys(&run, &next, named_cb, &nm), 0);

    /* the files a reload reads: not a reason to refuse it */
    gw_free(next.tls_crl);
    next.tls_crl = gw_strdup("/etc/waygate/new-crl.pem");
    assert_null(next.policy_file); /* the built-in policy, then a file */
    next.policy_file = gw_strdup("/etc/waygate/policy.conf");
    assert_int_equal(gw_config_restart_keys(&run, &next, named_cb, &nm), 0);

    /* a pool size, a listen address and the log level: named, in the file's order */
    next.db_pool_size = run.db_pool_size + 1;
    gw_free(next.listen);
    next.listen = gw_strdup("0.0.0.0:9443");
    next.log_level = GW_LOG_ERROR;
    assert_int_equal(gw_config_restart_keys(&run, &next, named_cb, &nm), 3);
    assert_int_equal(nm.n, 3);
    assert_string_equal(nm.keys[0], "[server] listen");
    assert_string_equal(nm.keys[1], "[database] pool_size");
    assert_string_equal(nm.keys[2], "[log] level");
    assert_int_equal(gw_config_restart_keys(&run, &next, NULL, NULL), 3);

    /* the reloaded paths move into the running config; the rest stays as it ran */
    crl = next.tls_crl;
    gw_config_take_reloaded(&run, &next);
    assert_ptr_equal(run.tls_crl, crl);
    assert_string_equal(run.policy_file, "/etc/waygate/policy.conf");
    assert_null(next.policy_file);
    assert_true(ends_with(next.tls_crl, "/files/crl.pem")); /* the old one, for the caller */
    assert_string_equal(run.listen, "0.0.0.0:8443");
    assert_int_equal(run.log_level, GW_LOG_DEBUG);
    gw_config_clear(&next);
    gw_config_clear(&run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_request_memory_per_certificate_default),
        cmocka_unit_test(test_response_memory_per_certificate_default),
        cmocka_unit_test(test_remote_tls_conninfo),
        cmocka_unit_test(test_metrics_tls),
        cmocka_unit_test(test_forward_linger),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_no_file),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_reload_keys),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
