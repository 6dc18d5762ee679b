/* test_db_owner.c: the pool's shares (db.h, db_owner.c) without a server: a request is charged
 * to the current owner unless it is the audit writer's (GW_DB_RESERVED), shared work
 * (GW_DB_SHARED) or submitted with no owner; its charge comes back exactly once, before its
 * callback (which runs with the request's owner current, so that the next step it submits is
 * charged to the same principal) or when it is freed without one; an owner at its share is
 * refused and the refusal counted; nothing is left over (run under ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "db_int.h"

static const struct gw_db_stmt stmt = {.sql = "SELECT 1"};

static struct gw_db *pool(unsigned share)
{
    struct gw_db *db = gw_calloc(1, sizeof(*db));

    assert_non_null(db);
    db->share = share;
    return db;
}

static struct gw_db_owner owner(unsigned char first, unsigned char last)
{
    unsigned char fpr[GW_DB_OWNER_LEN] = {0};
    struct gw_db_owner o;

    fpr[0] = first; /* the bucket */
    fpr[GW_DB_OWNER_LEN - 1] = last;
    gw_db_owner_of(&o, true, fpr);
    return o;
}

/* A request as gw_db_exec makes it, charged as it charges it. */
static struct gw_db_req *req(struct gw_db *db, unsigned flags)
{
    int err;
    struct gw_db_req *r = gw_db_req_new(&stmt, 1, &err);

    assert_non_null(r);
    r->db = db;
    assert_int_equal(gw_db_owner_charge(db, r, flags), 0);
    return r;
}

static void test_charged_to_the_current_owner_only(void **state)
{
    struct gw_db *db = pool(2);
    struct gw_db_owner a = owner(7, 1), b = owner(7, 2), prev;
    struct gw_db_req *r[5];

    (void)state;
    r[0] = req(db, 0); /* no owner: a timer's work */
    assert_null(r[0]->owner);
    gw_db_owner_swap(db, &a, &prev);
    assert_false(prev.set);
    r[1] = req(db, GW_DB_TXN);
    r[2] = req(db, GW_DB_RESERVED); /* the audit writer's */
    r[3] = req(db, GW_DB_SHARED);   /* a group commit */
    assert_null(r[2]->owner);
    assert_null(r[3]->owner);
    assert_int_equal(gw_db_owner_pending(db, &a), 1);
    assert_false(gw_db_share_used(db, &a));
    r[4] = req(db, 0);
    assert_int_equal(gw_db_owner_pending(db, &a), 2);
    /* a at its share: refused and counted; b (same bucket) and anonymous callers are not */
    assert_true(gw_db_share_used(db, &a));
    assert_false(gw_db_share_used(db, &b));
    assert_int_equal(gw_db_owner_pending(db, &b), 0);
    assert_int_equal(gw_db_share_refusals(db), 1);
    assert_int_equal(gw_db_share_peak(db), 2);
    gw_db_owner_swap(db, &prev, NULL);
    assert_false(db->cur.set);
    /* freed without a callback (cancelled while queued): given back once */
    gw_db_req_free(r[1]);
    assert_int_equal(gw_db_owner_pending(db, &a), 1);
    gw_db_owner_release(r[4]);
    gw_db_owner_release(r[4]); /* a second time: nothing */
    assert_int_equal(gw_db_owner_pending(db, &a), 0);
    for (int i = 0; i < 5; i++)
        if (i != 1)
            gw_db_req_free(r[i]);
    for (size_t i = 0; i < DB_OWNER_BUCKETS; i++)
        assert_null(db->owners[i]); /* an owner at 0 is off its chain */
    gw_free(db);
}

struct step {
    struct gw_db *db;
    struct gw_db_owner a;
    unsigned pending_in_cb;
    bool owner_in_cb;
    struct gw_db_req *next;
};

static void step_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct step *s = arg;

    (void)err;
    (void)res;
    s->pending_in_cb = gw_db_owner_pending(s->db, &s->a);
    s->owner_in_cb = s->db->cur.set && memcmp(s->db->cur.key, s->a.key, GW_DB_OWNER_LEN) == 0;
    s->next = req(s->db, 0); /* the call's next step */
}

static void test_given_back_before_the_callback_and_the_next_step_charged(void **state)
{
    struct gw_db *db = pool(1);
    struct gw_db_owner b = owner(9, 9), prev;
    struct step s = {.db = db, .a = owner(3, 1)};
    struct gw_db_req *r;

    (void)state;
    gw_db_owner_swap(db, &s.a, &prev);
    r = req(db, 0);
    r->cb = step_cb;
    r->arg = &s;
    /* the callback runs from the loop, where another owner (or none) may be current */
    gw_db_owner_swap(db, &b, NULL);
    gw_db_req_complete(r, 0);
    assert_int_equal(s.pending_in_cb, 0); /* its own charge already back: a at 0 of 1 */
    assert_true(s.owner_in_cb);
    assert_non_null(s.next);
    assert_int_equal(gw_db_owner_pending(db, &s.a), 1);
    assert_int_equal(gw_db_owner_pending(db, &b), 0);
    /* and the owner current before the callback is current again */
    assert_true(db->cur.set);
    assert_memory_equal(db->cur.key, b.key, GW_DB_OWNER_LEN);
    /* a cancelled request's completion gives its charge back, with no callback */
    s.next->cancelled = true;
    gw_db_req_complete(s.next, GW_EUNAVAIL);
    assert_int_equal(gw_db_owner_pending(db, &s.a), 0);
    gw_db_owner_swap(db, &prev, NULL);
    gw_db_owner_free_all(db);
    gw_free(db);
}

static void test_no_certificate_is_one_owner(void **state)
{
    struct gw_db *db = pool(1);
    struct gw_db_owner anon1, anon2;
    unsigned char fpr[GW_DB_OWNER_LEN];
    struct gw_db_req *r;

    (void)state;
    memset(fpr, 0xab, sizeof(fpr));
    gw_db_owner_of(&anon1, false, fpr); /* the fingerprint is ignored without a certificate */
    gw_db_owner_of(&anon2, false, NULL);
    gw_db_owner_swap(db, &anon1, NULL);
    r = req(db, 0);
    assert_true(gw_db_share_used(db, &anon2));
    gw_db_req_free(r);
    assert_false(gw_db_share_used(db, &anon2));
    gw_db_owner_swap(db, NULL, NULL);
    gw_free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_charged_to_the_current_owner_only),
        cmocka_unit_test(test_given_back_before_the_callback_and_the_next_step_charged),
        cmocka_unit_test(test_no_certificate_is_one_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
