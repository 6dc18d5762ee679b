/* test_report.c: the monthly report's month bounds in UTC+08:00 and its JSON and CSV documents
 * (domain/report.c), shared by Compliance.Report and waygatectl report monthly; the gateway's
 * rules for a report it may not count (a pool of one connection) or could not count (the
 * outcome its attempt's record holds, and what the caller is told). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "report.h"

static void test_month_bounds(void **state)
{
    int64_t from, to;

    (void)state;
    /* 2026-12-01T00:00+08:00 = 2026-11-30T16:00Z = 1796054400 s */
    assert_int_equal(gw_report_month("2026-12", &from, &to), 0);
    assert_true(from == INT64_C(1796054400) * 1000000);
    /* 2027-01-01T00:00+08:00 = 2026-12-31T16:00Z = 1798732800 s */
    assert_true(to == INT64_C(1798732800) * 1000000);
    /* February of a leap year: 29 days */
    assert_int_equal(gw_report_month("2028-02", &from, &to), 0);
    assert_true(to - from == INT64_C(29) * 86400 * 1000000);
    assert_int_equal(gw_report_month("2000-01", &from, &to), 0);
    assert_true(from == (INT64_C(946684800) - 8 * 3600) * 1000000);
}

static void test_month_refused(void **state)
{
    static const char *const bad[] = {"",        "2026",     "2026-1",  "2026-13",
                                      "2026-00", "1999-12",  "2026/12", "2026-12-01",
                                      "20a6-12", " 2026-12", NULL};
    int64_t from = 7, to = 7;

    (void)state;
    for (size_t i = 0; bad[i] != NULL; i++)
        assert_int_equal(gw_report_month(bad[i], &from, &to), GW_EINVAL);
    assert_int_equal(gw_report_month(NULL, &from, &to), GW_EINVAL);
    assert_true(from == 7 && to == 7);
}

static void sample(struct gw_report *r)
{
    memset(r, 0, sizeof(*r));
    strcpy(r->month, "2026-12");
    assert_int_equal(gw_report_month(r->month, &r->from_us, &r->to_us), 0);
    r->generated_at = 1764900000;
    r->bulk_requested = 3;
    r->lawful_reads = 5;
    r->incidents[GW_SEV_HIGH] = 2;
    r->incidents[GW_SEV_LOW] = 1;
    r->records_destroyed = 40;
    r->suspicious = 9;
}

static void test_json(void **state)
{
    struct gw_report r;
    char buf[GW_REPORT_DOC_MAX];
    size_t len;

    (void)state;
    sample(&r);
    assert_int_equal(gw_report_json(&r, buf, sizeof(buf), &len), 0);
    assert_int_equal(strlen(buf), len);
    assert_non_null(strstr(buf, "\"month\":\"2026-12\""));
    assert_non_null(strstr(buf, "\"bulk_requested\":3,"));
    assert_non_null(strstr(buf, "\"lawful_access_reads\":5,"));
    assert_non_null(strstr(buf, "\"incidents\":3,\"incidents_by_severity\":{\"low\":1,"
                                "\"medium\":0,\"high\":2,\"critical\":0},"));
    assert_non_null(strstr(buf, "\"records_destroyed\":40,"));
    assert_non_null(strstr(buf, "\"suspicious_list_size\":9}"));
    /* too small: says how much is needed, never overflows */
    assert_int_equal(gw_report_json(&r, buf, 10, &len), GW_ETOOBIG);
    assert_true(len > 10);
}

static void test_csv(void **state)
{
    struct gw_report r;
    char buf[GW_REPORT_DOC_MAX];
    size_t len;

    (void)state;
    sample(&r);
    assert_int_equal(gw_report_csv(&r, buf, sizeof(buf), &len), 0);
    assert_memory_equal(buf, "month,metric,value\n2026-12,bulk_requested,3\n", 44);
    assert_non_null(strstr(buf, "\n2026-12,incidents,3\n2026-12,incidents_low,1\n"));
    assert_non_null(strstr(buf, "\n2026-12,incidents_high,2\n"));
    assert_non_null(strstr(buf, "\n2026-12,suspicious_list_size,9\n"));
    assert_non_null(strstr(buf, "\n2026-12,generated_at,1764900000\n"));
}

static void test_pool_check(void **state)
{
    struct gw_fault f;
    char msg[256];

    (void)state;
    assert_int_equal(gw_report_pool_check(2, &f), 0);
    assert_int_equal(gw_report_pool_check(256, &f), 0);
    for (unsigned pool = 0; pool < 2; pool++) {
        gw_fault_clear(&f);
        assert_int_equal(gw_report_pool_check(pool, &f), GW_EPRECOND);
        assert_int_equal(gw_fault_status(&f), GW_GRPC_FAILED_PRECONDITION);
        (void)gw_fault_format(&f, msg, sizeof(msg));
        assert_string_equal(msg, "a report needs [database] pool_size of at least 2 connections "
                                 "(its count holds one for up to [compliance] report_timeout_ms); "
                                 "no report was made");
    }
}

static void test_not_counted(void **state)
{
    static const struct {
        int err;
        const char *outcome;
        enum gw_grpc_status status;
        const char *msg;
    } cases[] = {
        {GW_ETIMEOUT, "timeout", GW_GRPC_DEADLINE_EXCEEDED,
         "month: counting the month took longer than the report's time limit (300 ms, "
         "[compliance] report_timeout_ms); no report was made"},
        {GW_EUNAVAIL, "failed", GW_GRPC_UNAVAILABLE, "database unavailable; retrying is safe"},
        /* the pool's queue full: err.c's one answer for it, as every handler gives it */
        {GW_EQUEUEFULL, "failed", GW_GRPC_UNAVAILABLE,
         "the gateway's queue for the database is full, nothing was done; retrying is safe"},
        {GW_EINTERNAL, "failed", GW_GRPC_INTERNAL,
         "the report's counts could not be read; no report was made"},
        {GW_ENOMEM, "failed", GW_GRPC_INTERNAL,
         "the report's counts could not be read; no report was made"},
    };
    struct gw_fault f;
    char msg[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gw_fault_clear(&f);
        assert_string_equal(gw_report_not_counted(cases[i].err, 300, &f), cases[i].outcome);
        assert_int_equal(gw_fault_status(&f), cases[i].status);
        (void)gw_fault_format(&f, msg, sizeof(msg));
        assert_string_equal(msg, cases[i].msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_month_bounds), cmocka_unit_test(test_month_refused),
        cmocka_unit_test(test_json),         cmocka_unit_test(test_csv),
        cmocka_unit_test(test_pool_check),   cmocka_unit_test(test_not_counted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
