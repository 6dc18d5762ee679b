/* test_preauthq.c: the queue of unauthenticated connections (preauthq.h): the victim is always
 * the connection accepted first, whatever was removed since (authenticated or closed), removing
 * twice or removing a node never queued changes nothing, and a node can be queued again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "preauthq.h"

static void test_victim_is_the_oldest(void **state)
{
    struct gw_preauthq q = {0};
    struct gw_preauthq_node n[4] = {0};
    int conn[4];

    (void)state;
    assert_null(gw_preauthq_victim(&q));
    for (int i = 0; i < 4; i++)
        gw_preauthq_push(&q, &n[i], &conn[i]);
    assert_int_equal(gw_preauthq_len(&q), 4);
    assert_ptr_equal(gw_preauthq_victim(&q), &conn[0]);
    /* one in the middle authenticates: the oldest is still the victim */
    gw_preauthq_remove(&q, &n[2]);
    assert_ptr_equal(gw_preauthq_victim(&q), &conn[0]);
    /* the victim is closed: the next oldest follows, never one accepted later */
    gw_preauthq_remove(&q, &n[0]);
    assert_ptr_equal(gw_preauthq_victim(&q), &conn[1]);
    gw_preauthq_remove(&q, &n[1]);
    assert_ptr_equal(gw_preauthq_victim(&q), &conn[3]);
    gw_preauthq_remove(&q, &n[3]);
    assert_null(gw_preauthq_victim(&q));
    assert_int_equal(gw_preauthq_len(&q), 0);
    assert_null(q.oldest);
    assert_null(q.newest);
}

static void test_remove_is_idempotent(void **state)
{
    struct gw_preauthq q = {0};
    struct gw_preauthq_node a = {0}, b = {0}, never = {0};
    int ca, cb;

    (void)state;
    gw_preauthq_push(&q, &a, &ca);
    gw_preauthq_push(&q, &b, &cb);
    gw_preauthq_remove(&q, &never); /* a connection that was never queued */
    assert_int_equal(gw_preauthq_len(&q), 2);
    gw_preauthq_remove(&q, &a);
    gw_preauthq_remove(&q, &a); /* authenticated, then closed: released once */
    assert_int_equal(gw_preauthq_len(&q), 1);
    assert_ptr_equal(gw_preauthq_victim(&q), &cb);
    assert_false(a.queued);
    assert_null(a.older);
    assert_null(a.newer);
}

static void test_requeued_node_is_the_newest(void **state)
{
    struct gw_preauthq q = {0};
    struct gw_preauthq_node a = {0}, b = {0};
    int ca, cb;

    (void)state;
    gw_preauthq_push(&q, &a, &ca);
    gw_preauthq_push(&q, &b, &cb);
    gw_preauthq_remove(&q, &a);
    gw_preauthq_push(&q, &a, &ca); /* memory of a freed connection, reused by a new one */
    assert_ptr_equal(gw_preauthq_victim(&q), &cb);
    gw_preauthq_remove(&q, &b);
    assert_ptr_equal(gw_preauthq_victim(&q), &ca);
    assert_ptr_equal(q.oldest, &a);
    assert_ptr_equal(q.newest, &a);
}

/* A full queue under churn, as at the cap: each new connection closes the oldest, so the one
 * pushed k pushes ago survives exactly while k < the cap. */
static void test_churn_at_the_cap(void **state)
{
    enum { CAP = 8, PUSHES = 100 };
    struct gw_preauthq q = {0};
    struct gw_preauthq_node n[PUSHES] = {{0}};
    int conn[PUSHES];

    (void)state;
    for (int i = 0; i < PUSHES; i++) {
        if (gw_preauthq_len(&q) >= CAP) {
            int *v = gw_preauthq_victim(&q);
            assert_ptr_equal(v, &conn[i - CAP]);
            gw_preauthq_remove(&q, &n[v - conn]);
        }
        gw_preauthq_push(&q, &n[i], &conn[i]);
        assert_true(gw_preauthq_len(&q) <= CAP);
    }
    assert_ptr_equal(gw_preauthq_victim(&q), &conn[PUSHES - CAP]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_victim_is_the_oldest),
        cmocka_unit_test(test_remove_is_idempotent),
        cmocka_unit_test(test_requeued_node_is_the_newest),
        cmocka_unit_test(test_churn_at_the_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
