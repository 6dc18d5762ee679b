/* test_admin_util.c: the pure parts of the Admin handlers' helpers (api/api_admin_util.c).
 * One certificate's share of the password-hashing queue (gw_admin_share_take): at most
 * GW_API_AUTH_SHARE places per certificate (RESOURCE_EXHAUSTED naming the share), and when every
 * slot of the table is held by other certificates (as many certificates as slots with a job in
 * flight) a new certificate is refused busy, naming the queue's bound, while one that holds a
 * slot still gets its share; a place given back is taken again. Shown on the gateway's own table
 * (GW_APP_PWSHARE_SLOTS, app->pwshare) and on a table of two slots. And the refusal of a store
 * error (gw_admin_db_fault): a full queue (GW_EQUEUEFULL, the audit writer's or the pool's) is
 * UNAVAILABLE "the gateway's queue for the database is full", never RESOURCE_EXHAUSTED. The
 * handlers' use of both is shown end to end by tests/integration/test_auth_process.py (the
 * share) and test_accounts.py (the full queues). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"
#include "api_admin_int.h"
#include "app.h"
#include "err.h"

#define BUSY_CERT_MSG                                                                              \
    "too many password checks in progress over this certificate (at most 8): retry later"
#define BUSY_MSG "too many requests of this kind in progress (at most 64): retry later"
#define QUEUE_FULL_MSG                                                                             \
    "the gateway's queue for the database is full, nothing was done; retrying is safe"

static struct gw_app app; /* the gateway's table, as daemon.c has it: zeroed */

static void refused_with(const struct gw_fault *f, enum gw_grpc_status status, const char *msg)
{
    char text[256];

    assert_int_equal(gw_fault_status(f), status);
    gw_fault_format(f, text, sizeof(text));
    assert_string_equal(text, msg);
}

static void cert_name(char *out, size_t n, unsigned i)
{
    snprintf(out, n, "device-%u", i);
}

static void a_certificate_holds_at_most_its_share(void **state)
{
    struct gw_fault f;
    int slot = -1;

    (void)state;
    memset(&app, 0, sizeof(app));
    for (unsigned i = 0; i < GW_API_AUTH_SHARE; i++) {
        int s = gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 1, &f);

        assert_true(s >= 0);
        if (i > 0)
            assert_int_equal(s, slot); /* one slot per certificate */
        slot = s;
    }
    assert_int_equal(app.pwshare[slot].n, GW_API_AUTH_SHARE);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 1, &f), -1);
    refused_with(&f, GW_GRPC_RESOURCE_EXHAUSTED, BUSY_CERT_MSG);
    assert_int_equal(app.pwshare[slot].n, GW_API_AUTH_SHARE); /* a refusal takes nothing */
    /* another certificate is not held back by it */
    assert_true(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_b", 1, &f) >= 0);
    /* a place given back is taken again */
    gw_admin_share_give(app.pwshare, slot, 1);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 1, &f),
                     slot);
    gw_admin_share_give(app.pwshare, -1, 1); /* none: nothing changes */
    assert_int_equal(app.pwshare[slot].n, GW_API_AUTH_SHARE);
}

/* A job takes as many places as the password hashes it runs (a ChangePassword up to 8: the old
 * password, the new one against the current and the five remembered, the new hash): one of 8
 * fills the certificate's share, a Login beside it is refused, and its places come back
 * together. */
static void a_job_takes_a_place_per_hash(void **state)
{
    struct gw_fault f;
    int slot;

    (void)state;
    memset(&app, 0, sizeof(app));
    slot =
        gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", GW_API_AUTH_SHARE, &f);
    assert_true(slot >= 0);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 1, &f), -1);
    refused_with(&f, GW_GRPC_RESOURCE_EXHAUSTED, BUSY_CERT_MSG);
    gw_admin_share_give(app.pwshare, slot, GW_API_AUTH_SHARE);
    assert_int_equal(app.pwshare[slot].n, 0); /* all of them back: the slot is free */
    assert_true(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 5, &f) >= 0);
    assert_true(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 3, &f) >= 0);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 1, &f), -1);
    gw_admin_share_give(app.pwshare, slot, 3);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 4, &f), -1);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, "branch_a", 3, &f),
                     slot);
}

/* Every slot of the gateway's table held by another certificate: a new one is refused busy (the
 * queue's bound), one already holding a slot gets the rest of its share, and a slot emptied is
 * a new certificate's. */
static void every_slot_taken_is_busy(void **state)
{
    struct gw_fault f;
    char name[32];

    (void)state;
    memset(&app, 0, sizeof(app));
    for (unsigned i = 0; i < GW_APP_PWSHARE_SLOTS; i++) {
        cert_name(name, sizeof(name), i);
        assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, name, 1, &f),
                         (int)i);
    }
    cert_name(name, sizeof(name), GW_APP_PWSHARE_SLOTS);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, name, 1, &f), -1);
    refused_with(&f, GW_GRPC_RESOURCE_EXHAUSTED, BUSY_MSG);
    for (unsigned i = 0; i < GW_APP_PWSHARE_SLOTS; i++)
        assert_int_equal(app.pwshare[i].n, 1); /* nobody's place was taken over */
    cert_name(name, sizeof(name), 5);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, name, 1, &f), 5);
    assert_int_equal(app.pwshare[5].n, 2);
    gw_admin_share_give(app.pwshare, 77, 1);
    cert_name(name, sizeof(name), GW_APP_PWSHARE_SLOTS);
    assert_int_equal(gw_admin_share_take(app.pwshare, GW_APP_PWSHARE_SLOTS, name, 1, &f), 77);
    assert_string_equal(app.pwshare[77].cert, name);
}

/* The same rule on a table of two slots: the third certificate is busy until one gives back. */
static void a_small_table(void **state)
{
    struct gw_app_pwshare slots[2];
    struct gw_fault f;

    (void)state;
    memset(slots, 0, sizeof(slots));
    assert_int_equal(gw_admin_share_take(slots, 2, "a", 1, &f), 0);
    assert_int_equal(gw_admin_share_take(slots, 2, "b", 1, &f), 1);
    assert_int_equal(gw_admin_share_take(slots, 2, "c", 1, &f), -1);
    refused_with(&f, GW_GRPC_RESOURCE_EXHAUSTED, BUSY_MSG);
    assert_int_equal(gw_admin_share_take(slots, 2, "a", 1, &f), 0);
    gw_admin_share_give(slots, 1, 1);
    assert_int_equal(gw_admin_share_take(slots, 2, "c", 1, &f), 1);
    assert_string_equal(slots[1].cert, "c");
    assert_int_equal(gw_admin_share_take(slots, 2, "b", 1, &f), -1);
    refused_with(&f, GW_GRPC_RESOURCE_EXHAUSTED, BUSY_MSG);
}

static void a_full_queue_is_unavailable(void **state)
{
    struct gw_fault f;

    (void)state;
    gw_admin_db_fault(GW_EQUEUEFULL, &f);
    refused_with(&f, GW_GRPC_UNAVAILABLE, QUEUE_FULL_MSG);
    gw_admin_db_fault(GW_EUNAVAIL, &f);
    assert_int_equal(f.rule, GW_RULE_DB_UNAVAILABLE);
    assert_int_equal(gw_fault_status(&f), GW_GRPC_UNAVAILABLE);
    gw_admin_db_fault(GW_EINTERNAL, &f);
    assert_int_equal(f.rule, GW_RULE_NONE);
    assert_int_equal(gw_fault_status(&f), GW_GRPC_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_certificate_holds_at_most_its_share),
        cmocka_unit_test(a_job_takes_a_place_per_hash),
        cmocka_unit_test(every_slot_taken_is_busy),
        cmocka_unit_test(a_small_table),
        cmocka_unit_test(a_full_queue_is_unavailable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
