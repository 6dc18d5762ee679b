/* test_memwipe.c: the wipe-on-free allocator handed to libevent and nghttp2 (memwipe.h, h2mem.h):
 * realloc keeps the bytes and moves only when it must, failures leave the block untouched, and
 * libevent and nghttp2 run on it. That freed blocks hold nothing is shown from outside the
 * process, by tests/integration/test_wipe.py (reading freed memory here would be undefined). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <malloc.h>

#include "alloc.h"
#include "h2mem.h"
#include "memwipe.h"

static void test_realloc_keeps_bytes_and_moves_only_to_grow(void **state)
{
    uint8_t *p, *q;
    size_t have;

    (void)state;
    p = gw_memwipe_realloc(NULL, 10);
    assert_non_null(p);
    memcpy(p, "0123456789", 10);
    have = malloc_usable_size(p);
    q = gw_memwipe_realloc(p, have); /* fits: the same block */
    assert_ptr_equal(q, p);
    q = gw_memwipe_realloc(p, 4); /* shrinks in place; the tail is wiped when freed */
    assert_ptr_equal(q, p);
    q = gw_memwipe_realloc(p, have + 4096);
    assert_non_null(q);
    assert_memory_equal(q, "0123456789", 10);
    gw_memwipe_free(q);
    gw_memwipe_free(NULL);
}

static void test_realloc_failure_leaves_the_block(void **state)
{
    uint8_t *p, *q;

    (void)state;
    p = gw_memwipe_calloc(4, 4);
    assert_non_null(p);
    for (int i = 0; i < 16; i++)
        assert_int_equal(p[i], 0);
    memcpy(p, "secret", 6);
    gw_alloc_fail_nth(1);
    q = gw_memwipe_realloc(p, 1 << 16);
    assert_null(q);
    assert_memory_equal(p, "secret", 6);
    gw_alloc_fail_nth(1);
    assert_null(gw_memwipe_malloc(8));
    gw_alloc_fail_nth(0);
    gw_memwipe_free(p);
}

/* libevent on the allocator: chains grow, are pulled up (copied into a new chain, the old ones
 * freed) and drained, and the bytes stay right. */
static void test_libevent_runs_on_it(void **state)
{
    struct evbuffer *b;
    char chunk[3000], out[6000];

    (void)state;
    assert_true(gw_memwipe_enabled());
    gw_memwipe_install();
    b = evbuffer_new();
    assert_non_null(b);
    memset(chunk, 'a', sizeof chunk);
    assert_int_equal(evbuffer_add(b, chunk, sizeof chunk), 0);
    memset(chunk, 'b', sizeof chunk);
    assert_int_equal(evbuffer_add(b, chunk, sizeof chunk), 0);
    assert_non_null(evbuffer_pullup(b, -1));
    assert_int_equal(evbuffer_remove(b, out, sizeof out), (int)sizeof out);
    assert_int_equal(out[0], 'a');
    assert_int_equal(out[sizeof out - 1], 'b');
    assert_int_equal(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}

static void test_nghttp2_allocator(void **state)
{
    nghttp2_mem *m = gw_h2mem();
    uint8_t *p;

    (void)state;
    assert_non_null(m);
    p = m->calloc(2, 8, m->mem_user_data);
    assert_non_null(p);
    p = m->realloc(p, 1 << 14, m->mem_user_data);
    assert_non_null(p);
    p[(1 << 14) - 1] = 1;
    m->free(p, m->mem_user_data);
    m->free(NULL, m->mem_user_data);
}

/* A session's allocator (h2mem.h): large blocks are mappings of their own, zero-filled, kept
 * when moved, counted while they live; the fail-nth hook reaches them. */
static void test_session_allocator_maps_large_blocks(void **state)
{
    struct gw_h2mem a;
    nghttp2_mem *m = gw_h2mem_init(&a);
    struct gw_h2mem_held held;
    uint8_t *small, *big, *zero;

    (void)state;
    assert_non_null(m);
    small = m->malloc(100, m->mem_user_data);
    assert_non_null(small);
    assert_true(a.heap >= 100);
    big = m->malloc(GW_H2MEM_FRAMEBUF, m->mem_user_data);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 4096u, 0); /* pages of its own */
    memcpy(big, "frame", 5);
    zero = m->calloc(256, 16, m->mem_user_data);
    assert_non_null(zero);
    for (size_t i = 0; i < 4096; i++)
        assert_int_equal(zero[i], 0);
    zero[100] = 7;
    gw_h2mem_held(&a, &held);
    assert_int_equal(held.mapped, 20480 + 4096);
    assert_int_equal(held.resident, 8192); /* one page of each was touched */
    gw_h2mem_wipe_scratch(&a);             /* the frame buffer is wiped, its page still there */
    assert_int_equal(big[0], 0);
    gw_h2mem_held(&a, &held);
    assert_int_equal(held.resident, 8192);
    gw_h2mem_release_idle(&a); /* the frame buffer's page goes back; a page in use stays */
    gw_h2mem_held(&a, &held);
    assert_int_equal(held.resident, 4096);
    assert_int_equal(big[0], 0);
    assert_int_equal(zero[100], 7);
    zero[100] = 0; /* a page of zeros goes back too, and reads the same */
    gw_h2mem_release_idle(&a);
    gw_h2mem_held(&a, &held);
    assert_int_equal(held.resident, 0);
    assert_int_equal(zero[100], 0);
    memcpy(big, "frame", 5);
    big = m->realloc(big, 40000, m->mem_user_data); /* moved to a larger mapping */
    assert_non_null(big);
    assert_memory_equal(big, "frame", 5);
    small = m->realloc(small, 8000, m->mem_user_data); /* from the heap into a mapping */
    assert_non_null(small);
    gw_alloc_fail_nth(1);
    assert_null(m->malloc(8192, m->mem_user_data));
    gw_alloc_fail_nth(0);
    m->free(big, m->mem_user_data);
    m->free(small, m->mem_user_data);
    m->free(zero, m->mem_user_data);
    m->free(NULL, m->mem_user_data);
    gw_h2mem_held(&a, &held);
    assert_int_equal(held.mapped, 0);
    assert_int_equal(held.heap, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realloc_keeps_bytes_and_moves_only_to_grow),
        cmocka_unit_test(test_realloc_failure_leaves_the_block),
        cmocka_unit_test(test_libevent_runs_on_it),
        cmocka_unit_test(test_nghttp2_allocator),
        cmocka_unit_test(test_session_allocator_maps_large_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
