/* test_err.c: the single error mapping (err.h): every error code's gRPC status, one non-empty
 * wording per rule, and a fault's grpc-message made of the field path and the wording only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"

/* The intended status of every project error code (err.h), written out independently. */
static const struct {
    int err;
    enum gw_grpc_status status;
} expected_status[] = {
    {GW_OK, GW_GRPC_OK},
    {GW_ENOMEM, GW_GRPC_RESOURCE_EXHAUSTED},
    {GW_EINVAL, GW_GRPC_INVALID_ARGUMENT},
    {GW_ETOOBIG, GW_GRPC_RESOURCE_EXHAUSTED},
    {GW_EUNAVAIL, GW_GRPC_UNAVAILABLE},
    {GW_ETIMEOUT, GW_GRPC_DEADLINE_EXCEEDED},
    {GW_ECANCELLED, GW_GRPC_CANCELLED},
    {GW_ENOTFOUND, GW_GRPC_NOT_FOUND},
    {GW_EEXIST, GW_GRPC_ALREADY_EXISTS},
    {GW_EPRECOND, GW_GRPC_FAILED_PRECONDITION},
    {GW_EPERM, GW_GRPC_PERMISSION_DENIED},
    {GW_EAUTH, GW_GRPC_UNAUTHENTICATED},
    {GW_EDATALOSS, GW_GRPC_DATA_LOSS},
    {GW_ECRYPTO, GW_GRPC_INTERNAL},
    {GW_EIO, GW_GRPC_INTERNAL},
    {GW_EPROTO, GW_GRPC_INTERNAL},
    {GW_EUNIMPL, GW_GRPC_UNIMPLEMENTED},
    {GW_EINTERNAL, GW_GRPC_INTERNAL},
    {GW_EQUEUEFULL, GW_GRPC_UNAVAILABLE},
};
#define NCODES (sizeof(expected_status) / sizeof(expected_status[0]))

static void test_every_code_maps_to_its_status(void **state)
{
    (void)state;
    /* The table covers every code from GW_OK down to GW_EQUEUEFULL. */
    assert_int_equal(NCODES, (size_t)(-GW_EQUEUEFULL + 1));
    for (size_t i = 0; i < NCODES; i++) {
        struct gw_fault f;
        if (gw_err_grpc_status(expected_status[i].err) != expected_status[i].status)
            fail_msg("code %d maps to %d, expected %d", expected_status[i].err,
                     (int)gw_err_grpc_status(expected_status[i].err),
                     (int)expected_status[i].status);
        /* a fault's status is its code's status, whatever the rule */
        (void)gw_fault_set(&f, expected_status[i].err, "waybill", "waybill_no",
                           GW_RULE_OUTSIDE_SEGMENTS);
        assert_int_equal(gw_fault_status(&f), expected_status[i].status);
        assert_true(gw_err_str(expected_status[i].err)[0] != '\0');
    }
    assert_int_equal(gw_err_grpc_status(-99), GW_GRPC_INTERNAL);
    assert_int_equal(gw_err_grpc_status(1), GW_GRPC_INTERNAL);
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_every_rule_has_one_wording(void **state)
{
    (void)state;
    assert_string_equal(gw_rule_str(GW_RULE_NONE), "");
    assert_string_equal(gw_rule_str(GW_RULE_COUNT), "");
    assert_string_equal(gw_rule_str((enum gw_rule) - 1), "");
    for (int r = 1; r < GW_RULE_COUNT; r++) {
        const char *w = gw_rule_str((enum gw_rule)r);
        if (w[0] == '\0')
            fail_msg("rule %d has no wording", r);
        /* a bounded wording has exactly one place for its limit; no other has any */
        assert_int_equal(count_char(w, '%'), gw_rule_bounded((enum gw_rule)r) ? 1 : 0);
        /* one wording per rule: no two rules share a wording */
        for (int o = 1; o < r; o++)
            if (strcmp(w, gw_rule_str((enum gw_rule)o)) == 0)
                fail_msg("rules %d and %d share the wording \"%s\"", o, r, w);
    }
}

static void test_message_is_field_and_wording_only(void **state)
{
    struct gw_fault f;
    char msg[256], want[256];
    size_t n;

    (void)state;
    for (int r = 1; r < GW_RULE_COUNT; r++) {
        if (gw_rule_bounded((enum gw_rule)r))
            continue;
        assert_int_equal(
            gw_fault_set(&f, GW_EINVAL, "waybills[3].recipient", "id_number", (enum gw_rule)r),
            GW_EINVAL);
        n = gw_fault_format(&f, msg, sizeof(msg));
        snprintf(want, sizeof(want), "waybills[3].recipient.id_number: %s",
                 gw_rule_str((enum gw_rule)r));
        assert_string_equal(msg, want);
        assert_int_equal(n, strlen(want));
    }

    /* a bound is written where the wording says */
    (void)gw_fault_set(&f, GW_EINVAL, "waybill.sender", "name", GW_RULE_TOO_LONG);
    f.limit = 64;
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, "waybill.sender.name: is too long (at most 64 bytes)");

    /* no field: the wording alone */
    (void)gw_fault_set(&f, GW_EUNAVAIL, NULL, NULL, GW_RULE_NOT_CONFIGURED);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, gw_rule_str(GW_RULE_NOT_CONFIGURED));
    assert_int_equal(gw_fault_status(&f), GW_GRPC_UNAVAILABLE);

    /* no rule: the code's description */
    (void)gw_fault_set(&f, GW_ETIMEOUT, "", "", GW_RULE_NONE);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, "deadline exceeded");

    /* only one of path and field: no stray dot */
    (void)gw_fault_set(&f, GW_EINVAL, "waybills", NULL, GW_RULE_BATCH_EMPTY);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, "waybills: at least one waybill is required");
    (void)gw_fault_set(&f, GW_EINVAL, NULL, "service", GW_RULE_UTF8);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, "service: is not valid UTF-8");

    /* NULL fault: the code still comes back */
    assert_int_equal(gw_fault_set(NULL, GW_EPERM, "a", "b", GW_RULE_OWN_BRANCH), GW_EPERM);
    gw_fault_clear(&f);
    assert_int_equal(f.code, 0);
    assert_string_equal(f.field, "");
    assert_int_equal(f.rule, GW_RULE_NONE);
}

#define QUEUE_FULL_MSG                                                                             \
    "the gateway's queue for the database is full, nothing was done; retrying is safe"

/* A full queue (the pool's, the audit writer's, the store's) is one condition with one answer,
 * whoever saw it and whatever field and rule its maker named: UNAVAILABLE (clients retry it)
 * with GW_RULE_QUEUE_FULL's wording alone. Not RESOURCE_EXHAUSTED, GW_ETOOBIG's status. */
static void test_a_full_queue_is_unavailable_queue_full(void **state)
{
    static const enum gw_rule named[] = {
        GW_RULE_NONE,           GW_RULE_NOT_STORED,          GW_RULE_NOT_READ,
        GW_RULE_DB_UNAVAILABLE, GW_RULE_ACCESS_NOT_RECORDED, GW_RULE_QUEUE_FULL};
    struct gw_fault f;
    char msg[256];

    (void)state;
    assert_int_equal(gw_err_grpc_status(GW_EQUEUEFULL), GW_GRPC_UNAVAILABLE);
    assert_string_equal(gw_err_str(GW_EQUEUEFULL), "queue full");
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        assert_int_equal(gw_fault_set(&f, GW_EQUEUEFULL, "waybills[3]", "waybill_no", named[i]),
                         GW_EQUEUEFULL);
        assert_int_equal(gw_fault_status(&f), GW_GRPC_UNAVAILABLE);
        assert_int_equal(f.rule, GW_RULE_QUEUE_FULL);
        assert_string_equal(f.field, "");
        assert_int_equal(gw_fault_format(&f, msg, sizeof(msg)), strlen(QUEUE_FULL_MSG));
        assert_string_equal(msg, QUEUE_FULL_MSG);
    }
    /* a fault filled by hand is worded the same */
    f.code = GW_EQUEUEFULL;
    f.rule = GW_RULE_NOT_STORED;
    snprintf(f.field, sizeof(f.field), "waybill");
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, QUEUE_FULL_MSG);
    /* and a cap stays a cap */
    (void)gw_fault_set(&f, GW_ETOOBIG, NULL, NULL, GW_RULE_NONE);
    assert_int_equal(gw_fault_status(&f), GW_GRPC_RESOURCE_EXHAUSTED);
    /* what a handler passes on for a store error it otherwise reports as its own code */
    assert_int_equal(gw_err_queue_full_or(GW_EQUEUEFULL, GW_EUNAVAIL), GW_EQUEUEFULL);
    assert_int_equal(gw_err_queue_full_or(GW_EINTERNAL, GW_EUNAVAIL), GW_EUNAVAIL);
    assert_int_equal(gw_err_queue_full_or(GW_ETOOBIG, GW_EINTERNAL), GW_EINTERNAL);
}

static void test_long_paths_and_small_buffers_are_cut(void **state)
{
    struct gw_fault f;
    char path[300], msg[16];
    size_t n;

    (void)state;
    memset(path, 'a', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    (void)gw_fault_set(&f, GW_EINVAL, path, "name", GW_RULE_REQUIRED);
    assert_int_equal(strlen(f.field), GW_FAULT_FIELD_MAX - 1);
    n = gw_fault_format(&f, msg, sizeof(msg));
    assert_int_equal(n, sizeof(msg) - 1);
    assert_int_equal(strlen(msg), sizeof(msg) - 1);
    assert_int_equal(gw_fault_format(&f, msg, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_maps_to_its_status),
        cmocka_unit_test(test_every_rule_has_one_wording),
        cmocka_unit_test(test_message_is_field_and_wording_only),
        cmocka_unit_test(test_long_paths_and_small_buffers_are_cut),
        cmocka_unit_test(test_a_full_queue_is_unavailable_queue_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
