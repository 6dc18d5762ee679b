/* test_peerlimit.c: admission by client address (peerlimit.h): the per-address cap of
 * unauthenticated connections, the accept rate (burst twice the rate, refilled over time), one
 * address never spends another's budget, IPv6 counts by /64, released slots come back, idle
 * addresses are dropped and the table is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "peerlimit.h"

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;

    memset(&ss, 0, sizeof(ss));
    s->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_preauth_cap_per_address(void **state)
{
    struct gw_peerlimit *pl = gw_peerlimit_new(1000, 4, 100);
    struct sockaddr_storage a = v4("127.0.0.2"), b = v4("127.0.0.1");
    struct gw_peerlimit_slot *slot[5], *other;

    (void)state;
    assert_non_null(pl);
    for (int i = 0; i < 4; i++)
        assert_int_equal(gw_peerlimit_admit(pl, SA(a), 0, &slot[i]), GW_PEERLIMIT_OK);
    assert_int_equal(gw_peerlimit_admit(pl, SA(a), 0, &slot[4]), GW_PEERLIMIT_PREAUTH);
    assert_null(slot[4]);
    assert_int_equal(gw_peerlimit_preauth(pl, SA(a)), 4);
    /* another address is not affected */
    assert_int_equal(gw_peerlimit_admit(pl, SA(b), 0, &other), GW_PEERLIMIT_OK);
    /* a slot released (authenticated or closed) lets one more in */
    gw_peerlimit_release(pl, slot[0]);
    assert_int_equal(gw_peerlimit_admit(pl, SA(a), 0, &slot[0]), GW_PEERLIMIT_OK);
    for (int i = 0; i < 4; i++)
        gw_peerlimit_release(pl, slot[i]);
    gw_peerlimit_release(pl, other);
    gw_peerlimit_release(pl, NULL); /* NULL-safe */
    assert_int_equal(gw_peerlimit_preauth(pl, SA(a)), 0);
    gw_peerlimit_free(pl);
}

static void test_accept_rate(void **state)
{
    struct gw_peerlimit *pl = gw_peerlimit_new(10, 1000, 100);
    struct sockaddr_storage a = v4("10.0.0.1"), b = v4("10.0.0.2");
    struct gw_peerlimit_slot *slot;
    unsigned ok = 0;

    (void)state;
    for (int i = 0; i < 100; i++) {
        if (gw_peerlimit_admit(pl, SA(a), 1000, &slot) == GW_PEERLIMIT_OK) {
            ok++;
            gw_peerlimit_release(pl, slot); /* closed at once: the rate still counts it */
        }
    }
    assert_int_equal(ok, 20); /* burst: two seconds' worth */
    assert_int_equal(gw_peerlimit_admit(pl, SA(a), 1000, &slot), GW_PEERLIMIT_RATE);
    assert_int_equal(gw_peerlimit_admit(pl, SA(b), 1000, &slot), GW_PEERLIMIT_OK);
    gw_peerlimit_release(pl, slot);
    /* 500 ms later: five more */
    ok = 0;
    for (int i = 0; i < 100; i++) {
        if (gw_peerlimit_admit(pl, SA(a), 1500, &slot) == GW_PEERLIMIT_OK) {
            ok++;
            gw_peerlimit_release(pl, slot);
        }
    }
    assert_int_equal(ok, 5);
    gw_peerlimit_free(pl);
}

static void test_ipv6_by_64(void **state)
{
    struct gw_peerlimit *pl = gw_peerlimit_new(1000, 2, 100);
    struct sockaddr_storage a1 = v6("2001:db8:1:2::1"), a2 = v6("2001:db8:1:2:ffff::9"),
                            b = v6("2001:db8:1:3::1"), m = v6("::ffff:192.0.2.7"),
                            m4 = v4("192.0.2.7");
    struct gw_peerlimit_slot *s1, *s2, *s3, *s4, *s5, *s6;

    (void)state;
    assert_int_equal(gw_peerlimit_admit(pl, SA(a1), 0, &s1), GW_PEERLIMIT_OK);
    assert_int_equal(gw_peerlimit_admit(pl, SA(a2), 0, &s2), GW_PEERLIMIT_OK);
    assert_int_equal(gw_peerlimit_admit(pl, SA(a1), 0, &s3), GW_PEERLIMIT_PREAUTH); /* same /64 */
    assert_int_equal(gw_peerlimit_admit(pl, SA(b), 0, &s3), GW_PEERLIMIT_OK);
    /* a v4-mapped IPv6 address is its IPv4 address */
    assert_int_equal(gw_peerlimit_admit(pl, SA(m), 0, &s4), GW_PEERLIMIT_OK);
    assert_int_equal(gw_peerlimit_admit(pl, SA(m4), 0, &s5), GW_PEERLIMIT_OK);
    assert_int_equal(gw_peerlimit_admit(pl, SA(m4), 0, &s6), GW_PEERLIMIT_PREAUTH);
    gw_peerlimit_release(pl, s1);
    gw_peerlimit_release(pl, s2);
    gw_peerlimit_release(pl, s3);
    gw_peerlimit_release(pl, s4);
    gw_peerlimit_release(pl, s5);
    gw_peerlimit_free(pl);
}

static void test_table_bounded(void **state)
{
    struct gw_peerlimit *pl = gw_peerlimit_new(1, 1, 8);
    struct gw_peerlimit_slot *held[8], *slot;
    char ip[32];

    (void)state;
    for (int i = 0; i < 8; i++) {
        struct sockaddr_storage a;
        snprintf(ip, sizeof(ip), "10.1.0.%d", i + 1);
        a = v4(ip);
        assert_int_equal(gw_peerlimit_admit(pl, SA(a), 0, &held[i]), GW_PEERLIMIT_OK);
    }
    assert_int_equal(gw_peerlimit_entries(pl), 8);
    {
        struct sockaddr_storage n = v4("10.2.0.1");
        /* every entry holds a slot: a new address is refused, nothing is dropped */
        assert_int_equal(gw_peerlimit_admit(pl, SA(n), 0, &slot), GW_PEERLIMIT_FULL);
        for (int i = 0; i < 8; i++)
            gw_peerlimit_release(pl, held[i]);
        /* released, but their buckets are not full yet (burst 2, one token spent): kept */
        assert_int_equal(gw_peerlimit_admit(pl, SA(n), 0, &slot), GW_PEERLIMIT_FULL);
        /* a second later they are idle: dropped to make room */
        assert_int_equal(gw_peerlimit_admit(pl, SA(n), 1000, &slot), GW_PEERLIMIT_OK);
        assert_true(gw_peerlimit_entries(pl) <= 8);
        gw_peerlimit_release(pl, slot);
    }
    gw_peerlimit_free(pl);
}

static void test_other_family_admitted(void **state)
{
    struct gw_peerlimit *pl = gw_peerlimit_new(1, 1, 8);
    struct sockaddr_storage u;
    struct gw_peerlimit_slot *slot = (struct gw_peerlimit_slot *)&u;

    (void)state;
    memset(&u, 0, sizeof(u));
    u.ss_family = AF_UNIX;
    assert_int_equal(gw_peerlimit_admit(pl, SA(u), 0, &slot), GW_PEERLIMIT_OK);
    assert_null(slot);
    assert_int_equal(gw_peerlimit_entries(pl), 0);
    gw_peerlimit_free(pl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preauth_cap_per_address),
        cmocka_unit_test(test_accept_rate),
        cmocka_unit_test(test_ipv6_by_64),
        cmocka_unit_test(test_table_bounded),
        cmocka_unit_test(test_other_family_admitted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
