/* test_budget.c: the byte budgets of memory in flight (budget.h): a take is all or nothing
 * across the connection's and the gateway's budget (and, for request memory, the client
 * certificate's between them), never passes a limit, names the first budget without room, and
 * every give brings them all back; 0 means no limit. A charge (a unary answer's bytes) always goes
 * through and leaves no room until enough is given back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "budget.h"

static void test_take_within_limits(void **state)
{
    struct gw_budget conn, global;

    (void)state;
    gw_budget_init(&conn, 100);
    gw_budget_init(&global, 150);
    assert_int_equal(gw_budget_take(&conn, &global, 60), 0);
    assert_int_equal(gw_budget_take(&conn, &global, 40), 0); /* exactly the limit */
    assert_int_equal(conn.used, 100);
    assert_int_equal(gw_budget_take(&conn, &global, 1), GW_ETOOBIG);
    assert_int_equal(conn.used, 100);
    assert_int_equal(global.used, 100);
    gw_budget_give(&conn, &global, 60);
    assert_int_equal(conn.used, 40);
    assert_int_equal(global.used, 40);
    assert_int_equal(conn.peak, 100);
}

/* Refused by the gateway's budget: the connection's is left as it was. */
static void test_all_or_nothing(void **state)
{
    struct gw_budget a, b, global;

    (void)state;
    gw_budget_init(&a, 100);
    gw_budget_init(&b, 100);
    gw_budget_init(&global, 150);
    assert_int_equal(gw_budget_take(&a, &global, 100), 0);
    assert_int_equal(gw_budget_take(&b, &global, 60), GW_ETOOBIG);
    assert_int_equal(b.used, 0);
    assert_int_equal(global.used, 100);
    assert_int_equal(gw_budget_take(&b, &global, 50), 0);
    assert_int_equal(global.used, 150);
    assert_int_equal(gw_budget_take(&b, &global, SIZE_MAX), GW_ETOOBIG);
}

/* Request memory's three levels: the connection's, the certificate's (shared by its
 * connections), the gateway's. A certificate at its limit is refused on a connection with room,
 * while another certificate still takes from the gateway's budget; without a certificate (NULL)
 * only the other two count. */
static void test_three_levels(void **state)
{
    struct gw_budget conn_a1, conn_a2, conn_b, conn_plain, cert_a, cert_b, global;
    struct gw_budget *const a1[] = {&conn_a1, &cert_a, &global};
    struct gw_budget *const a2[] = {&conn_a2, &cert_a, &global};
    struct gw_budget *const b[] = {&conn_b, &cert_b, &global};
    struct gw_budget *const plain[] = {&conn_plain, NULL, &global};
    struct gw_budget *over = NULL;

    (void)state;
    gw_budget_init(&conn_a1, 100);
    gw_budget_init(&conn_a2, 100);
    gw_budget_init(&conn_b, 100);
    gw_budget_init(&conn_plain, 100);
    gw_budget_init(&cert_a, 150);
    gw_budget_init(&cert_b, 150);
    gw_budget_init(&global, 300);
    assert_int_equal(gw_budget_take_levels(a1, 3, 100, &over), 0);
    assert_int_equal(gw_budget_take_levels(a2, 3, 50, &over), 0); /* certificate a: full */
    assert_int_equal(gw_budget_take_levels(a2, 3, 1, &over), GW_ETOOBIG);
    assert_ptr_equal(over, &cert_a); /* its connection had room: the certificate's is named */
    assert_int_equal(conn_a2.used, 50);
    assert_int_equal(global.used, 150);
    assert_int_equal(gw_budget_take_levels(a1, 3, 1, &over), GW_ETOOBIG);
    assert_ptr_equal(over, &conn_a1); /* the first without room, in their order */
    assert_int_equal(gw_budget_take_levels(b, 3, 100, &over), 0);    /* another certificate */
    assert_int_equal(gw_budget_take_levels(plain, 3, 50, &over), 0); /* no certificate */
    assert_int_equal(gw_budget_take_levels(plain, 3, 1, &over), GW_ETOOBIG);
    assert_ptr_equal(over, &global);
    assert_int_equal(conn_plain.used, 50);
    assert_int_equal(cert_b.used, 100);
    gw_budget_give_levels(a1, 3, 100);
    assert_int_equal(conn_a1.used, 0);
    assert_int_equal(cert_a.used, 50);
    assert_int_equal(global.used, 200);
    assert_int_equal(cert_a.peak, 150);
    assert_int_equal(gw_budget_take_levels(a2, 3, 50, &over), 0);        /* room again */
    assert_int_equal(gw_budget_take_levels(a2, 3, 1, NULL), GW_ETOOBIG); /* over may be NULL */
}

static void test_no_limit_and_null(void **state)
{
    struct gw_budget open, global;

    (void)state;
    gw_budget_init(&open, 0);
    gw_budget_init(&global, 10);
    assert_int_equal(gw_budget_take(&open, NULL, SIZE_MAX / 2), 0);
    assert_int_equal(gw_budget_take(NULL, &global, 10), 0);
    assert_int_equal(gw_budget_take(NULL, &global, 1), GW_ETOOBIG);
    gw_budget_give(NULL, &global, 25); /* more than taken: clamped at 0, never wrapped */
    assert_int_equal(global.used, 0);
    assert_int_equal(gw_budget_take(NULL, NULL, 5), 0);
}

/* The response rule: a charge passes the limit, room comes back only below it. */
static void test_charge_and_room(void **state)
{
    struct gw_budget conn, global;

    (void)state;
    gw_budget_init(&conn, 100);
    gw_budget_init(&global, 1000);
    assert_true(gw_budget_room(&conn));
    gw_budget_charge(&conn, &global, 99);
    assert_true(gw_budget_room(&conn)); /* one byte left: a streaming handler may queue */
    gw_budget_charge(&conn, &global, 50);
    assert_int_equal(conn.used, 149);
    assert_int_equal(conn.peak, 149);
    assert_false(gw_budget_room(&conn));
    assert_true(gw_budget_room(&global));
    assert_int_equal(gw_budget_take(&conn, &global, 1), GW_ETOOBIG);
    gw_budget_give(&conn, &global, 49);
    assert_false(gw_budget_room(&conn)); /* exactly at the limit: no room */
    gw_budget_give(&conn, &global, 1);
    assert_true(gw_budget_room(&conn));
    assert_int_equal(global.used, 99);
    gw_budget_charge(&conn, &global, SIZE_MAX); /* saturates, never wraps */
    assert_int_equal(conn.used, SIZE_MAX);
    assert_false(gw_budget_room(&conn));
    assert_true(gw_budget_room(NULL));
    gw_budget_init(&conn, 0);
    gw_budget_charge(&conn, NULL, SIZE_MAX);
    assert_true(gw_budget_room(&conn)); /* no limit */
}

/* Response memory's three levels (h2.c): a charge goes to every level, past a limit too (NULL:
 * no budget at that level), and a give brings them all back. */
static void test_charge_levels(void **state)
{
    struct gw_budget conn, cert, global;
    struct gw_budget *const levels[] = {&conn, &cert, &global};
    struct gw_budget *const plain[] = {&conn, NULL, &global};

    (void)state;
    gw_budget_init(&conn, 100);
    gw_budget_init(&cert, 150);
    gw_budget_init(&global, 1000);
    gw_budget_charge_levels(levels, 3, 90);
    assert_true(gw_budget_room(&conn));
    gw_budget_charge_levels(levels, 3, 80); /* past the connection's and the certificate's */
    assert_int_equal(conn.used, 170);
    assert_int_equal(cert.used, 170);
    assert_int_equal(global.used, 170);
    assert_false(gw_budget_room(&conn));
    assert_false(gw_budget_room(&cert));
    assert_true(gw_budget_room(&global));
    gw_budget_give_levels(levels, 3, 80);
    assert_true(gw_budget_room(&cert));
    assert_int_equal(cert.peak, 170);
    gw_budget_charge_levels(plain, 3, 10); /* no certificate: the others only */
    assert_int_equal(cert.used, 90);
    assert_int_equal(global.used, 100);
    gw_budget_give_levels(plain, 3, 10);
    gw_budget_give_levels(levels, 3, 90);
    assert_int_equal(conn.used + cert.used + global.used, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_within_limits), cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_three_levels),       cmocka_unit_test(test_no_limit_and_null),
        cmocka_unit_test(test_charge_and_room),    cmocka_unit_test(test_charge_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
