/* test_conninfo.c: the no-password rule of a libpq connection string (conninfo.h), as the daemon's
 * [database] conninfo and waygatectl's --db / $WAYGATE_PGURI[_OWNER] apply it: a password in any
 * of libpq's forms (key=value, a URI's user:password@ or ?password=, sslpassword, empty values
 * included) is found; malformed strings are invalid (never taken for password-free), a bare word
 * is a database name; the rest is accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conninfo.h"

struct row {
    const char *conninfo;
    enum gw_conninfo_verdict want;
};

static void check(const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        enum gw_conninfo_verdict got = gw_conninfo_check(rows[i].conninfo);

        if (got != rows[i].want)
            fail_msg("%s: %d, want %d", rows[i].conninfo ? rows[i].conninfo : "(null)", (int)got,
                     (int)rows[i].want);
    }
}

static void test_password_found(void **state)
{
    static const struct row rows[] = {
        {"password=pw", GW_CONNINFO_PASSWORD},
        {"host=/run/pg dbname=waygate user=waygate_admin password=pw", GW_CONNINFO_PASSWORD},
        {"password=", GW_CONNINFO_PASSWORD},
        {"password=''", GW_CONNINFO_PASSWORD},
        {"dbname=x password='p w\\'q'", GW_CONNINFO_PASSWORD},
        {"  password = pw  ", GW_CONNINFO_PASSWORD},
        {"sslpassword=pp", GW_CONNINFO_PASSWORD},
        {"postgresql://waygate_admin:pw@localhost/waygate", GW_CONNINFO_PASSWORD},
        {"postgres://waygate_admin:pw@localhost:5432/waygate", GW_CONNINFO_PASSWORD},
        {"postgresql://u:p%40w@localhost/db", GW_CONNINFO_PASSWORD},
        {"postgresql:///waygate?host=/run/pg&password=pw", GW_CONNINFO_PASSWORD},
        {"postgresql:///waygate?password=", GW_CONNINFO_PASSWORD},
        {"postgresql:///waygate?sslpassword=pp&user=u", GW_CONNINFO_PASSWORD},
    };

    (void)state;
    check(rows, sizeof(rows) / sizeof(rows[0]));
}

static void test_malformed_is_invalid(void **state)
{
    static const struct row rows[] = {
        {NULL, GW_CONNINFO_INVALID},
        {"password", GW_CONNINFO_DBNAME}, /* a word alone: a database of that name */
        {"host=h password", GW_CONNINFO_INVALID},
        {"password='pw", GW_CONNINFO_INVALID},        /* unterminated quote */
        {"password=pw bogus=1", GW_CONNINFO_INVALID}, /* unknown keyword */
        {"=pw", GW_CONNINFO_INVALID},
        {"postgresql://u:p%zz@h/db", GW_CONNINFO_INVALID}, /* bad percent-encoding */
        {"postgresql://u:pw@h/db?bogus=1", GW_CONNINFO_INVALID},
        {"postgresql://h/db?password", GW_CONNINFO_INVALID}, /* a parameter without '=' */
        {"postgresql://[::1/db", GW_CONNINFO_INVALID},
        {"postgresql://u:pw@h:notaport/db?x", GW_CONNINFO_INVALID},
        {"postgres:/h/db?password=pw", GW_CONNINFO_INVALID}, /* no URI: '=' makes it key=value */
    };

    (void)state;
    check(rows, sizeof(rows) / sizeof(rows[0]));
}

static void test_password_free_accepted(void **state)
{
    static const struct row rows[] = {
        {"", GW_CONNINFO_OK},
        {"dbname=waygate", GW_CONNINFO_OK},
        {"host=/run/pg port=5432 dbname=waygate user=waygate_admin passfile=/etc/waygate/pgpass",
         GW_CONNINFO_OK},
        {"host=db.example sslmode=verify-full sslrootcert=/ca.pem sslcert=/c.pem sslkey=/k.pem",
         GW_CONNINFO_OK},
        {"postgresql:///waygate?host=/run/pg&port=5432&user=waygate_admin", GW_CONNINFO_OK},
        {"postgresql://waygate_admin@localhost/waygate?passfile=/p", GW_CONNINFO_OK},
        {"postgres://localhost", GW_CONNINFO_OK},
        {"postgresql://u:@localhost/db", GW_CONNINFO_OK}, /* an empty one: libpq sets none */
        {"dbname=passwords", GW_CONNINFO_OK},             /* the word in a value is no password */
        {"waygate", GW_CONNINFO_DBNAME},
    };

    (void)state;
    check(rows, sizeof(rows) / sizeof(rows[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_found),
        cmocka_unit_test(test_malformed_is_invalid),
        cmocka_unit_test(test_password_free_accepted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
