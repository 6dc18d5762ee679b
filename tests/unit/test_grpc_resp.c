/* test_grpc_resp.c: the client's reading of a gRPC response (transport/grpc_resp.c): headers and
 * trailers collected, grpc-message percent-decoded and sanitised, HTTP statuses mapped, a missing
 * or malformed grpc-status INTERNAL, OK only with exactly one whole message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "grpc_resp.h"

static void hdr(struct gw_grpc_resp *r, const char *name, const char *value)
{
    gw_grpc_resp_header(r, (const uint8_t *)name, strlen(name), (const uint8_t *)value,
                        strlen(value));
}

static enum gw_grpc_status verdict(const char *status, const char *grpc, const char *message,
                                   unsigned messages, bool partial, char *msg)
{
    struct gw_grpc_resp r;

    gw_grpc_resp_init(&r);
    if (status != NULL)
        hdr(&r, ":status", status);
    hdr(&r, "content-type", "application/grpc");
    if (grpc != NULL)
        hdr(&r, "grpc-status", grpc);
    if (message != NULL)
        hdr(&r, "grpc-message", message);
    return gw_grpc_resp_verdict(&r, messages, partial, msg, GW_GRPC_RESP_MSG_MAX);
}

static void test_ok_needs_exactly_one_whole_message(void **state)
{
    char msg[GW_GRPC_RESP_MSG_MAX];

    (void)state;
    assert_int_equal(verdict("200", "0", NULL, 1, false, msg), GW_GRPC_OK);
    assert_string_equal(msg, "");
    assert_int_equal(verdict("200", "0", NULL, 0, false, msg), GW_GRPC_INTERNAL);
    assert_int_equal(verdict("200", "0", NULL, 2, false, msg), GW_GRPC_INTERNAL);
    assert_int_equal(verdict("200", "0", NULL, 1, true, msg), GW_GRPC_INTERNAL);
}

static void test_server_status_and_message_passed_through(void **state)
{
    char msg[GW_GRPC_RESP_MSG_MAX];

    (void)state;
    assert_int_equal(verdict("200", "3", "deliveries%5B0%5D: bad", 0, false, msg),
                     GW_GRPC_INVALID_ARGUMENT);
    assert_string_equal(msg, "deliveries[0]: bad");
    assert_int_equal(verdict("200", "14", NULL, 0, false, msg), GW_GRPC_UNAVAILABLE);
    assert_string_equal(msg, "backend: call failed");
    /* control bytes never reach a log line; a broken escape stays as it is */
    assert_int_equal(verdict("200", "13", "a%0Ab%zz%4", 0, false, msg), GW_GRPC_INTERNAL);
    assert_string_equal(msg, "a?b%zz%4");
}

static void test_grpc_status_missing_or_malformed(void **state)
{
    char msg[GW_GRPC_RESP_MSG_MAX];

    (void)state;
    assert_int_equal(verdict("200", NULL, NULL, 1, false, msg), GW_GRPC_INTERNAL);
    assert_non_null(strstr(msg, "grpc-status"));
    assert_int_equal(verdict("200", "17", NULL, 1, false, msg), GW_GRPC_INTERNAL);
    assert_int_equal(verdict("200", "0x", NULL, 1, false, msg), GW_GRPC_INTERNAL);
    assert_int_equal(verdict("200", "", NULL, 1, false, msg), GW_GRPC_INTERNAL);
    assert_int_equal(verdict("200", "0000", NULL, 1, false, msg), GW_GRPC_INTERNAL);
}

static void test_http_status_mapping(void **state)
{
    char msg[GW_GRPC_RESP_MSG_MAX];

    (void)state;
    assert_int_equal(verdict("400", NULL, NULL, 0, false, msg), GW_GRPC_INTERNAL);
    assert_int_equal(verdict("401", NULL, NULL, 0, false, msg), GW_GRPC_UNAUTHENTICATED);
    assert_int_equal(verdict("403", NULL, NULL, 0, false, msg), GW_GRPC_PERMISSION_DENIED);
    assert_int_equal(verdict("404", NULL, NULL, 0, false, msg), GW_GRPC_UNIMPLEMENTED);
    assert_int_equal(verdict("429", NULL, NULL, 0, false, msg), GW_GRPC_UNAVAILABLE);
    assert_int_equal(verdict("503", NULL, NULL, 0, false, msg), GW_GRPC_UNAVAILABLE);
    assert_int_equal(verdict("500", "0", NULL, 1, false, msg), GW_GRPC_UNKNOWN);
    assert_string_equal(msg, "backend: HTTP status 500");
    assert_int_equal(verdict(NULL, "0", NULL, 1, false, msg), GW_GRPC_UNKNOWN);
}

static void test_long_message_is_bounded(void **state)
{
    char big[2000], msg[GW_GRPC_RESP_MSG_MAX];

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(verdict("200", "8", big, 0, false, msg), GW_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(strlen(msg), GW_GRPC_RESP_MSG_MAX - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_needs_exactly_one_whole_message),
        cmocka_unit_test(test_server_status_and_message_passed_through),
        cmocka_unit_test(test_grpc_status_missing_or_malformed),
        cmocka_unit_test(test_http_status_mapping),
        cmocka_unit_test(test_long_message_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
