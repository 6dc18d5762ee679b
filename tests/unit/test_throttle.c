/* test_throttle.c: the scraping throttle's table (policy/throttle.h): distinct keys per principal
 * in a sliding window, a repeat not counted, one incident per window, principals independent,
 * bounded memory (full tables refuse as full, not as over a limit; expired entries make room),
 * the table sized from the config's default well above 4096 principals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "throttle.h"

static void key(uint8_t k[GW_THROTTLE_KEY_LEN], unsigned n)
{
    memset(k, 0, GW_THROTTLE_KEY_LEN);
    memcpy(k, &n, sizeof(n));
}

static enum gw_throttle_verdict look(struct gw_throttle *t, const char *who, unsigned n,
                                     uint64_t now, bool *inc)
{
    uint8_t k[GW_THROTTLE_KEY_LEN];

    key(k, n);
    return gw_throttle_check(t, who, k, 3, 60, now, inc);
}

static void limit_repeat_and_one_incident_per_window(void **state)
{
    struct gw_throttle *t = gw_throttle_new(8, 100);
    bool inc;

    (void)state;
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(look(t, "cert:c", i, 1000, &inc), GW_THROTTLE_OK);
    /* a key already seen is not a new lookup */
    assert_int_equal(look(t, "cert:c", 1, 1001, &inc), GW_THROTTLE_OK);
    assert_int_equal(look(t, "cert:c", 3, 1002, &inc), GW_THROTTLE_OVER);
    assert_true(inc);
    assert_int_equal(look(t, "cert:c", 4, 1003, &inc), GW_THROTTLE_OVER);
    assert_false(inc); /* one incident per window, not one per call */
    /* another principal is not affected */
    assert_int_equal(look(t, "cert:d", 3, 1003, &inc), GW_THROTTLE_OK);
    /* keys 0 and 2 (seen at 1000) leave the window at 1060; key 1 was seen again at 1001 */
    assert_int_equal(look(t, "cert:c", 5, 1060, &inc), GW_THROTTLE_OK);
    assert_int_equal(look(t, "cert:c", 6, 1060, &inc), GW_THROTTLE_OK);
    assert_int_equal(look(t, "cert:c", 7, 1060, &inc), GW_THROTTLE_OVER);
    assert_false(inc); /* still the window of the first incident */
    /* key 1 (seen at 1001) leaves at 1061: room for one more */
    assert_int_equal(look(t, "cert:c", 8, 1062, &inc), GW_THROTTLE_OK);
    assert_int_equal(look(t, "cert:c", 9, 1062, &inc), GW_THROTTLE_OVER);
    assert_true(inc); /* 60 s after the first incident: a new window, a new incident */
    gw_throttle_free(t);
}

static void zero_limit_or_window_allows_nothing(void **state)
{
    struct gw_throttle *t = gw_throttle_new(2, 10);
    uint8_t k[GW_THROTTLE_KEY_LEN];
    bool inc;

    (void)state;
    key(k, 1);
    assert_int_equal(gw_throttle_check(t, "cert:x", k, 0, 60, 5, &inc), GW_THROTTLE_OVER);
    assert_int_equal(gw_throttle_check(t, "", k, 10, 60, 5, &inc), GW_THROTTLE_OVER);
    assert_int_equal(gw_throttle_check(NULL, "cert:x", k, 10, 60, 5, &inc), GW_THROTTLE_OVER);
    /* no window: every key would be forgotten at once, so the limit would never be reached */
    for (unsigned i = 0; i < 3; i++) {
        key(k, 100 + i);
        assert_int_equal(gw_throttle_check(t, "cert:y", k, 2, 0, 5 + i, &inc), GW_THROTTLE_OVER);
    }
    gw_throttle_free(t);
}

static void bounded_principals_and_keys(void **state)
{
    struct gw_throttle *t = gw_throttle_new(2, 4);
    struct gw_throttle_stats st;
    bool inc;

    (void)state;
    assert_int_equal(look(t, "cert:a", 1, 100, &inc), GW_THROTTLE_OK);
    assert_int_equal(look(t, "cert:b", 1, 100, &inc), GW_THROTTLE_OK);
    /* both slots hold live keys: a third principal is refused (fail closed), as the table's
     * capacity (not its own limit: it made no lookup), with one incident per window */
    assert_int_equal(look(t, "cert:c", 1, 100, &inc), GW_THROTTLE_FULL);
    assert_true(inc);
    assert_int_equal(look(t, "cert:d", 1, 100, &inc), GW_THROTTLE_FULL);
    assert_false(inc);
    gw_throttle_stats(t, &st);
    assert_int_equal(st.principals, 2);
    assert_int_equal(st.keys, 2);
    /* total key budget: 4 */
    assert_int_equal(look(t, "cert:a", 2, 101, &inc), GW_THROTTLE_OK);
    assert_int_equal(look(t, "cert:b", 2, 101, &inc), GW_THROTTLE_OK);
    assert_int_equal(look(t, "cert:a", 3, 102, &inc), GW_THROTTLE_FULL);
    assert_false(inc); /* the table's incident of this window was asked for at 100 */
    gw_throttle_stats(t, &st);
    assert_int_equal(st.keys, 4);
    /* a principal's own limit is still OVER, with its own incident */
    assert_int_equal(
        gw_throttle_check(t, "cert:b", (uint8_t[GW_THROTTLE_KEY_LEN]){9}, 2, 60, 102, &inc),
        GW_THROTTLE_OVER);
    assert_true(inc);
    /* once the window has passed, an idle principal's slot and keys are reused */
    assert_int_equal(look(t, "cert:c", 1, 200, &inc), GW_THROTTLE_OK);
    gw_throttle_stats(t, &st);
    assert_int_equal(st.principals, 2);
    assert_true(st.keys <= 4);
    gw_throttle_free(t);
}

/* The daemon's table (daemon.c: [server] lookup_throttle_principals and _keys, their defaults
 * here): with 4096 principals each holding a lookup of the window (the old fixed capacity), a
 * 4097th is counted, not refused; the table reports what it holds. */
static void default_table_takes_a_4097th_principal(void **state)
{
    struct gw_config c;
    struct gw_throttle *t;
    struct gw_throttle_stats st;
    char err[512], who[32];
    bool inc;

    (void)state;
    assert_int_equal(gw_config_load("data/config/minimal.conf", &c, err, sizeof(err)), 0);
    t = gw_throttle_new(c.lookup_throttle_principals, c.lookup_throttle_keys);
    assert_non_null(t);
    for (unsigned i = 0; i < 4096; i++) {
        snprintf(who, sizeof(who), "cert:device-%u", i);
        assert_int_equal(gw_throttle_check(t, who, (uint8_t[GW_THROTTLE_KEY_LEN]){1}, 200, 600,
                                           1000 + i / 100, &inc),
                         GW_THROTTLE_OK);
    }
    assert_int_equal(gw_throttle_check(t, "cert:device-4096", (uint8_t[GW_THROTTLE_KEY_LEN]){1},
                                       200, 600, 1100, &inc),
                     GW_THROTTLE_OK);
    gw_throttle_stats(t, &st);
    assert_int_equal(st.principals, 4097);
    assert_true(st.max_principals >= 65536);
    assert_int_equal(st.keys, 4097);
    assert_int_equal(st.full, 0);
    gw_throttle_free(t);
    gw_config_clear(&c);
}

/* Many keys of one principal through its index: a repeat is found (not counted again) among
 * thousands, keys leave the window by when they were last seen, and the freed room is counted
 * exactly. */
static void many_keys_repeat_and_expire(void **state)
{
    struct gw_throttle *t = gw_throttle_new(4, 100000);
    uint8_t k[GW_THROTTLE_KEY_LEN];
    struct gw_throttle_stats st;
    bool inc;

    (void)state;
    for (unsigned i = 0; i < 5000; i++) {
        key(k, i);
        assert_int_equal(gw_throttle_check(t, "cert:big", k, 5000, 60, 100, &inc), GW_THROTTLE_OK);
    }
    key(k, 5000);
    assert_int_equal(gw_throttle_check(t, "cert:big", k, 5000, 60, 101, &inc), GW_THROTTLE_OVER);
    for (unsigned i = 0; i < 5000; i += 2) { /* the even ones seen again at 130 */
        key(k, i);
        assert_int_equal(gw_throttle_check(t, "cert:big", k, 5000, 60, 130, &inc), GW_THROTTLE_OK);
    }
    gw_throttle_stats(t, &st);
    assert_int_equal(st.keys, 5000);
    /* at 160 the odd ones (seen at 100) are gone: 2500 new keys fit, the 2501st does not */
    for (unsigned i = 0; i < 2500; i++) {
        key(k, 10000 + i);
        assert_int_equal(gw_throttle_check(t, "cert:big", k, 5000, 60, 160, &inc), GW_THROTTLE_OK);
    }
    key(k, 20000);
    assert_int_equal(gw_throttle_check(t, "cert:big", k, 5000, 60, 160, &inc), GW_THROTTLE_OVER);
    key(k, 4998); /* an even one, still in the window */
    assert_int_equal(gw_throttle_check(t, "cert:big", k, 5000, 60, 160, &inc), GW_THROTTLE_OK);
    gw_throttle_stats(t, &st);
    assert_int_equal(st.keys, 5000);
    gw_throttle_free(t);
}

/* A principal that filled its arrays once and then looks one thing up a window keeps arrays the
 * size of what it keeps, not of what it once held: memory follows the key cap (review: 64 such
 * principals held 32 MiB for 64 keys). */
static void arrays_shrink_as_keys_expire(void **state)
{
    struct gw_throttle *t = gw_throttle_new(64, 1u << 20);
    struct gw_throttle_stats st;
    uint8_t k[GW_THROTTLE_KEY_LEN];
    char who[32];
    bool inc;

    (void)state;
    for (unsigned p = 0; p < 8; p++) {
        snprintf(who, sizeof(who), "cert:p%u", p);
        for (unsigned i = 0; i < 16384; i++) {
            key(k, i);
            assert_int_equal(gw_throttle_check(t, who, k, 16384, 60, 100, &inc), GW_THROTTLE_OK);
        }
    }
    gw_throttle_stats(t, &st);
    assert_int_equal(st.keys, 8 * 16384);
    assert_true(st.room >= 8 * 16384);
    for (uint64_t now = 200; now < 500; now += 100) /* one lookup a window, each principal */
        for (unsigned p = 0; p < 8; p++) {
            snprintf(who, sizeof(who), "cert:p%u", p);
            key(k, 100000 + (unsigned)now);
            assert_int_equal(gw_throttle_check(t, who, k, 16384, 60, now, &inc), GW_THROTTLE_OK);
        }
    gw_throttle_stats(t, &st);
    assert_int_equal(st.keys, 8);
    assert_true(st.room <= 4 * st.keys + 16 * st.principals);
    /* and the arrays grow again as the keys come back, each still found */
    for (unsigned i = 0; i < 1000; i++) {
        key(k, i);
        assert_int_equal(gw_throttle_check(t, "cert:p0", k, 16384, 60, 400, &inc), GW_THROTTLE_OK);
    }
    key(k, 999);
    assert_int_equal(gw_throttle_check(t, "cert:p0", k, 1001, 60, 401, &inc), GW_THROTTLE_OK);
    key(k, 5000);
    assert_int_equal(gw_throttle_check(t, "cert:p0", k, 1001, 60, 401, &inc), GW_THROTTLE_OVER);
    gw_throttle_free(t);
}

/* A principal is forgotten by its own window, not by the window of whoever looks up next: a
 * short-window role's lookup in a full table reset a long-window principal's count (review). */
static void each_principal_keeps_its_own_window(void **state)
{
    struct gw_throttle *t = gw_throttle_new(2, 1000);
    uint8_t k[GW_THROTTLE_KEY_LEN];
    bool inc;

    (void)state;
    for (unsigned i = 0; i < 3; i++) {
        key(k, i);
        assert_int_equal(gw_throttle_check(t, "cert:long", k, 3, 600, 100, &inc), GW_THROTTLE_OK);
    }
    key(k, 50);
    assert_int_equal(gw_throttle_check(t, "cert:short", k, 3, 10, 200, &inc), GW_THROTTLE_OK);
    /* the table is full: a third principal of the short window finds no slot, since the first
     * one's last lookup is 100 s old and its window is 600 s */
    assert_int_equal(gw_throttle_check(t, "cert:other", k, 3, 10, 200, &inc), GW_THROTTLE_FULL);
    key(k, 3);
    assert_int_equal(gw_throttle_check(t, "cert:long", k, 3, 600, 201, &inc), GW_THROTTLE_OVER);
    /* the short one's slot, idle past its own window, is taken */
    assert_int_equal(gw_throttle_check(t, "cert:other", k, 3, 10, 211, &inc), GW_THROTTLE_OK);
    gw_throttle_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limit_repeat_and_one_incident_per_window),
        cmocka_unit_test(zero_limit_or_window_allows_nothing),
        cmocka_unit_test(bounded_principals_and_keys),
        cmocka_unit_test(default_table_takes_a_4097th_principal),
        cmocka_unit_test(many_keys_repeat_and_expire),
        cmocka_unit_test(arrays_shrink_as_keys_expire),
        cmocka_unit_test(each_principal_keeps_its_own_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
