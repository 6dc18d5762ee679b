/* test_alloc.c: the allocation wrapper's fail-nth hook and the arena (alignment, cap, wipe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"

static void test_fail_nth(void **state)
{
    void *a, *b, *c;

    (void)state;
    gw_alloc_fail_nth(2);
    a = gw_malloc(10);
    b = gw_malloc(10);
    c = gw_malloc(10);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    gw_free(a);
    gw_free(c);

    gw_alloc_fail_nth(1);
    assert_null(gw_strdup("x"));
    a = gw_strdup("x");
    assert_non_null(a);
    assert_string_equal(a, "x");
    gw_free(a);

    gw_alloc_fail_nth(1);
    assert_null(gw_calloc(2, 8));
    gw_alloc_fail_nth(1);
    assert_null(gw_realloc(NULL, 8));

    gw_alloc_fail_nth(0);
    a = gw_malloc(1);
    assert_non_null(a);
    gw_free(a);
}

static void test_calloc_overflow(void **state)
{
    (void)state;
    assert_null(gw_calloc(SIZE_MAX / 2, 4));
}

static void test_strndup(void **state)
{
    char *s;

    (void)state;
    s = gw_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    gw_free_str_wipe(s);
    gw_free_str_wipe(NULL);
    gw_free_wipe(NULL, 5);
    gw_free(NULL);
}

static void test_arena_alignment(void **state)
{
    struct gw_arena *a;
    size_t sizes[] = {1, 3, 16, 17, 0, 100, 5000, 7, 9000, 1};
    size_t i;

    (void)state;
    a = gw_arena_new(1 << 20);
    assert_non_null(a);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = gw_arena_alloc(a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xa5, sizes[i]);
    }
    assert_true(gw_arena_used(a) >= 1 + 3 + 16 + 17 + 100 + 5000 + 7 + 9000 + 1);
    gw_arena_free(a);
    gw_arena_free(NULL);
}

static void test_arena_distinct(void **state)
{
    struct gw_arena *a = gw_arena_new(1 << 16);
    unsigned char *p[200];
    size_t i;

    (void)state;
    assert_non_null(a);
    for (i = 0; i < 200; i++) {
        p[i] = gw_arena_alloc(a, 40);
        assert_non_null(p[i]);
        memset(p[i], (int)i, 40);
    }
    for (i = 0; i < 200; i++) {
        unsigned char want[40];
        memset(want, (int)i, 40);
        assert_memory_equal(p[i], want, 40);
    }
    gw_arena_free(a);
}

static void test_arena_cap(void **state)
{
    struct gw_arena *a;

    (void)state;
    assert_null(gw_arena_new(0));
    a = gw_arena_new(100);
    assert_non_null(a);
    assert_null(gw_arena_alloc(a, 101));
    assert_non_null(gw_arena_alloc(a, 48)); /* 48 used */
    assert_non_null(gw_arena_alloc(a, 40)); /* rounded: 96 used */
    assert_int_equal(gw_arena_used(a), 96);
    assert_null(gw_arena_alloc(a, 5)); /* would take 16 more: over 100 */
    assert_null(gw_arena_alloc(a, SIZE_MAX));
    gw_arena_free(a);
}

/* A cap lowered for a while (a call's unpack) bounds what may be handed out, never takes back
 * what was; raised again, the arena goes on. */
static void test_arena_set_cap(void **state)
{
    struct gw_arena *a;

    (void)state;
    a = gw_arena_new(1u << 20);
    assert_non_null(a);
    assert_non_null(gw_arena_alloc(a, 100)); /* 112 used */
    assert_int_equal(gw_arena_cap(a), 1u << 20);
    gw_arena_set_cap(a, gw_arena_used(a) + 64);
    assert_non_null(gw_arena_alloc(a, 64));
    assert_null(gw_arena_alloc(a, 1));
    assert_null(gw_arena_alloc(a, 10000));
    gw_arena_set_cap(a, 16); /* below what is used: raised to it */
    assert_int_equal(gw_arena_cap(a), gw_arena_used(a));
    assert_null(gw_arena_alloc(a, 1));
    gw_arena_set_cap(a, 1u << 20);
    assert_non_null(gw_arena_alloc(a, 10000));
    assert_int_equal(gw_arena_used(a), 176 + 10000);
    gw_arena_free(a);
}

/* A string copied into an arena: NULL reads as "", a copy is its own memory, a full arena
 * gives NULL. */
static void test_arena_strdup(void **state)
{
    struct gw_arena *a = gw_arena_new(64);
    char src[] = "branch-a";
    char *c;

    (void)state;
    assert_non_null(a);
    assert_string_equal(gw_arena_strdup(a, NULL), "");
    c = gw_arena_strdup(a, src);
    assert_non_null(c);
    src[0] = 'X';
    assert_string_equal(c, "branch-a");
    assert_null(gw_arena_strdup(a, "a string longer than what is left of the 64-byte cap"));
    gw_arena_free(a);
}

static void test_arena_fail_nth(void **state)
{
    struct gw_arena *a;

    (void)state;
    gw_alloc_fail_nth(1);
    assert_null(gw_arena_new(1024));
    a = gw_arena_new(1 << 20);
    assert_non_null(a);
    gw_alloc_fail_nth(1); /* the first chunk cannot be had */
    assert_null(gw_arena_alloc(a, 10));
    assert_int_equal(gw_arena_used(a), 0);
    assert_non_null(gw_arena_alloc(a, 10));
    gw_alloc_fail_nth(1); /* a big one-off chunk cannot be had; the arena stays usable */
    assert_null(gw_arena_alloc(a, 100000));
    assert_non_null(gw_arena_alloc(a, 10));
    gw_arena_free(a);
}

/* A freed arena's usual-size chunk is kept for the next arena: wiped (no byte of the old
 * contents comes back) and still an allocation for the fail-nth hook. */
static void test_arena_chunk_reuse(void **state)
{
    struct gw_arena *a, *b;
    unsigned char *p, *q;

    (void)state;
    if (GW_BLOCK_CACHE == 0) /* AddressSanitizer: chunks are freed, none kept */
        skip();
    a = gw_arena_new(1 << 20);
    assert_non_null(a);
    p = gw_arena_alloc(a, 4000);
    assert_non_null(p);
    memset(p, 0xA5, 4000);
    gw_arena_free(a);
    b = gw_arena_new(1 << 20);
    assert_non_null(b);
    gw_alloc_fail_nth(1); /* the cached chunk is not handed out either */
    assert_null(gw_arena_alloc(b, 4000));
    q = gw_arena_alloc(b, 4000);
    assert_non_null(q);
    assert_ptr_equal(q, p); /* the same chunk came back */
    for (size_t i = 0; i < 4000; i++)
        assert_int_equal(q[i], 0);
    gw_arena_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_nth),          cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_strndup),           cmocka_unit_test(test_arena_alignment),
        cmocka_unit_test(test_arena_distinct),    cmocka_unit_test(test_arena_cap),
        cmocka_unit_test(test_arena_fail_nth),    cmocka_unit_test(test_arena_set_cap),
        cmocka_unit_test(test_arena_chunk_reuse), cmocka_unit_test(test_arena_strdup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
