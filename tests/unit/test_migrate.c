/* test_migrate.c: the pure migration plan: fresh, partial, up to date, and each refusal
 * (database newer than us, unknown version, gap, duplicate), plus the table check and the
 * embedded table itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "migrate.h"

static const struct gw_migration known[] = {
    {1, "001_foundation", "select 1;", 9},
    {2, "002_waybill", "select 2;", 9},
    {3, "003_more", "select 3;", 9},
};
#define NKNOWN (sizeof(known) / sizeof(known[0]))

static void test_fresh(void **state)
{
    size_t todo[NKNOWN], n = 99;
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(known, NKNOWN, NULL, 0, todo, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    assert_int_equal(todo[0], 0);
    assert_int_equal(todo[1], 1);
    assert_int_equal(todo[2], 2);
}

static void test_partial(void **state)
{
    size_t todo[NKNOWN], n = 99;
    int applied[] = {2, 1}; /* any order */
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(known, NKNOWN, applied, 2, todo, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(todo[0], 2);
}

static void test_up_to_date(void **state)
{
    size_t todo[NKNOWN], n = 99;
    int applied[] = {1, 2, 3};
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(known, NKNOWN, applied, 3, todo, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
}

static void test_newer_db(void **state)
{
    size_t todo[NKNOWN], n = 99;
    int applied[] = {1, 2, 3, 4};
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(known, NKNOWN, applied, 4, todo, &n, err, sizeof(err)),
                     GW_EPRECOND);
    assert_int_equal(n, 0);
    assert_string_equal(err, "database schema is at version 4, newer than this waygatectl knows "
                             "(3): upgrade waygatectl");
}

static void test_newer_db_no_migrations(void **state)
{
    size_t todo[1], n = 99;
    int applied[] = {1};
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(known, 0, applied, 1, todo, &n, err, sizeof(err)),
                     GW_EPRECOND);
    assert_non_null(strstr(err, "version 1, newer than this waygatectl knows (0)"));
}

static void test_gap(void **state)
{
    size_t todo[NKNOWN], n = 99;
    int applied[] = {1, 3};
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(known, NKNOWN, applied, 2, todo, &n, err, sizeof(err)),
                     GW_EPRECOND);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "lacks migration 002"));
}

static void test_unknown_version(void **state)
{
    static const struct gw_migration sparse[] = {
        {1, "001_a", "", 0},
        {5, "005_b", "", 0},
    };
    size_t todo[2], n = 99;
    int applied[] = {1, 3};
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(sparse, 2, applied, 2, todo, &n, err, sizeof(err)),
                     GW_EPRECOND);
    assert_non_null(strstr(err, "migration 003 applied, which this waygatectl does not know"));
}

static void test_duplicate_applied(void **state)
{
    size_t todo[NKNOWN], n = 99;
    int applied[] = {1, 1};
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_plan(known, NKNOWN, applied, 2, todo, &n, err, sizeof(err)),
                     GW_EPRECOND);
}

static void test_check(void **state)
{
    static const struct gw_migration unordered[] = {
        {2, "002_a", "", 0},
        {1, "001_b", "", 0},
    };
    static const struct gw_migration dup[] = {
        {1, "001_a", "", 0},
        {1, "001_b", "", 0},
    };
    static const struct gw_migration zero[] = {
        {0, "000_a", "", 0},
    };
    size_t todo[2], n;
    char err[256];

    (void)state;
    assert_int_equal(gw_migrate_check(known, NKNOWN, err, sizeof(err)), 0);
    assert_int_equal(gw_migrate_check(unordered, 2, err, sizeof(err)), GW_EINTERNAL);
    assert_non_null(strstr(err, "strictly increase"));
    assert_int_equal(gw_migrate_check(dup, 2, err, sizeof(err)), GW_EINTERNAL);
    assert_int_equal(gw_migrate_check(zero, 1, err, sizeof(err)), GW_EINTERNAL);
    assert_int_equal(gw_migrate_plan(unordered, 2, NULL, 0, todo, &n, err, sizeof(err)),
                     GW_EINTERNAL);
}

static void test_embedded(void **state)
{
    char err[256];
    size_t i;

    (void)state;
    assert_true(gw_migrations_count >= 1);
    assert_int_equal(gw_migrate_check(gw_migrations, gw_migrations_count, err, sizeof(err)), 0);
    assert_int_equal(gw_migrations[0].version, 1);
    assert_string_equal(gw_migrations[0].name, "001_foundation");
    assert_non_null(strstr(gw_migrations[0].sql, "CREATE TABLE incident"));
    for (i = 0; i < gw_migrations_count; i++) {
        assert_int_equal(strlen(gw_migrations[i].sql), gw_migrations[i].len);
        /* the runner wraps each file in its own transaction */
        assert_null(strstr(gw_migrations[i].sql, "\nBEGIN;"));
        assert_null(strstr(gw_migrations[i].sql, "\nCOMMIT;"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_up_to_date),
        cmocka_unit_test(test_newer_db),
        cmocka_unit_test(test_newer_db_no_migrations),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_unknown_version),
        cmocka_unit_test(test_duplicate_applied),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_embedded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
