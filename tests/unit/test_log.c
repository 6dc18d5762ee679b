/* test_log.c: JSON-line logging: escaping, invalid UTF-8, level filtering, context, line cap.
 * Output is captured by pointing fd 2 at a temporary file around each call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "log.h"

struct capture {
    int saved;
    FILE *tmp;
};

static void capture_start(struct capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(fileno(c->tmp), 2), 2);
}

/* Restores fd 2 and returns what was written (caller frees). */
static char *capture_end(struct capture *c)
{
    long n;
    char *buf;

    assert_int_equal(dup2(c->saved, 2), 2);
    close(c->saved);
    n = ftell(c->tmp);
    if (n <= 0)
        n = lseek(fileno(c->tmp), 0, SEEK_END);
    buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fileno(c->tmp), buf, (size_t)n, 0), n);
    fclose(c->tmp);
    return buf;
}

static int setup(void **state)
{
    (void)state;
    gw_log_level = GW_LOG_DEBUG;
    return 0;
}

static void test_escaping(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    gw_log_write(GW_LOG_INFO, "test", NULL, "q\"b\\n\nt\tc\x01 d\x7f e");
    out = capture_end(&c);
    assert_non_null(strstr(out, "\"msg\":\"q\\\"b\\\\n\\u000at\\u0009c\\u0001 d\\u007f e\"}\n"));
    assert_non_null(strstr(out, "\"level\":\"info\",\"component\":\"test\""));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* exactly one line */
    free(out);
}

static void test_utf8(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    /* valid 3-byte and 4-byte, then a stray 0xff, an overlong '/', a surrogate, a cut sequence */
    gw_log_write(GW_LOG_WARN, "test", NULL, "%s",
                 "\xe4\xb8\xad\xf0\x9f\x98\x80|\xff|\xc0\xaf|"
                 "\xed\xa0\x80|\xe4\xb8");
    out = capture_end(&c);
    assert_non_null(strstr(out, "\"msg\":\"\xe4\xb8\xad\xf0\x9f\x98\x80|\\ufffd|\\ufffd\\ufffd|"
                                "\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"}"));
    free(out);
}

static void test_time_format(void **state)
{
    struct capture c;
    char *out;
    const char *t;

    (void)state;
    capture_start(&c);
    gw_log_write(GW_LOG_ERROR, "test", NULL, "x");
    out = capture_end(&c);
    t = strstr(out, "{\"time\":\"");
    assert_ptr_equal(t, out);
    t += 9;
    /* 2026-11-27T07:43:04.123Z */
    assert_true(strlen(t) > 25);
    assert_int_equal(t[4], '-');
    assert_int_equal(t[7], '-');
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[13], ':');
    assert_int_equal(t[16], ':');
    assert_int_equal(t[19], '.');
    assert_int_equal(t[23], 'Z');
    assert_int_equal(t[24], '"');
    free(out);
}

static void test_level_filter(void **state)
{
    struct capture c;
    char *out;
    int evaluated = 0;

    (void)state;
    gw_log_level = GW_LOG_WARN;
    capture_start(&c);
    GW_LOG(GW_LOG_DEBUG, "test", NULL, "debug %d", ++evaluated);
    GW_LOG(GW_LOG_INFO, "test", NULL, "info %d", ++evaluated);
    GW_LOG(GW_LOG_WARN, "test", NULL, "warn");
    GW_LOG(GW_LOG_ERROR, "test", NULL, "error");
    out = capture_end(&c);
    assert_int_equal(evaluated, 0); /* arguments not even evaluated below the level */
    assert_null(strstr(out, "\"debug"));
    assert_null(strstr(out, "\"info"));
    assert_non_null(strstr(out, "\"level\":\"warn\""));
    assert_non_null(strstr(out, "\"level\":\"error\""));

    gw_log_level = GW_LOG_OFF;
    capture_start(&c);
    GW_LOG(GW_LOG_ERROR, "test", NULL, "error");
    free(out);
    out = capture_end(&c);
    assert_string_equal(out, "");
    free(out);
    gw_log_level = GW_LOG_DEBUG;
}

static void test_level_parse(void **state)
{
    enum gw_log_level l;

    (void)state;
    assert_int_equal(gw_log_level_parse("debug", &l), 0);
    assert_int_equal(l, GW_LOG_DEBUG);
    assert_int_equal(gw_log_level_parse("off", &l), 0);
    assert_int_equal(l, GW_LOG_OFF);
    assert_int_equal(gw_log_level_parse("warn", &l), 0);
    assert_int_equal(l, GW_LOG_WARN);
    assert_int_equal(gw_log_level_parse("WARN", &l), GW_EINVAL);
    assert_int_equal(gw_log_level_parse("verbose", &l), GW_EINVAL);
    assert_int_equal(gw_log_level_parse(NULL, &l), GW_EINVAL);
}

static void test_context(void **state)
{
    struct capture c;
    struct gw_log_ctx ctx = {"req-1", "127.0.0.1:5555", "cour\"ier"};
    char *out;

    (void)state;
    capture_start(&c);
    gw_log_write(GW_LOG_INFO, "conn", &ctx, "hello");
    out = capture_end(&c);
    assert_non_null(strstr(out, "\"msg\":\"hello\",\"request_id\":\"req-1\",\"peer\":\"127.0.0.1:"
                                "5555\",\"principal\":\"cour\\\"ier\"}\n"));
    free(out);
}

static void test_line_cap(void **state)
{
    struct capture c;
    struct gw_log_ctx ctx = {"req-2", "peer", "p"};
    char *big = malloc(10000);
    char *out;
    size_t n;

    (void)state;
    assert_non_null(big);
    memset(big, '"', 9999); /* each becomes two bytes */
    big[9999] = '\0';
    capture_start(&c);
    gw_log_write(GW_LOG_INFO, "test", &ctx, "%s", big);
    out = capture_end(&c);
    n = strlen(out);
    assert_true(n <= 4096);
    assert_true(n > 3500);
    assert_string_equal(out + n - 2, "}\n");
    assert_non_null(strstr(out, "...\",\"request_id\":\"req-2\""));
    assert_non_null(strstr(out, "\\\"...\"")); /* ends on a whole \" escape, not a split one */
    free(out);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaping),    cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_time_format), cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_level_parse), cmocka_unit_test(test_context),
        cmocka_unit_test(test_line_cap),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
