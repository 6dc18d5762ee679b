/* test_grpc.c: the pure gRPC framing layer: the length-prefixed decoder (split, partial, several
 * per chunk, oversized refused before its body, zero-length, compressed flag), grpc-timeout
 * parsing, grpc-message percent-encoding, request header checks, and the UTF-8 validator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "grpc.h"
#include "utf8.h"

struct sink {
    unsigned n;
    size_t lens[16];
    uint8_t data[16][64];
};

static int collect(void *arg, const uint8_t *msg, size_t len)
{
    struct sink *s = arg;

    assert_true(s->n < 16);
    s->lens[s->n] = len;
    if (len > 0) {
        assert_non_null(msg);
        memcpy(s->data[s->n], msg, len < 64 ? len : 64);
    }
    s->n++;
    return 0;
}

static size_t frame(uint8_t *out, uint8_t flag, const char *body, size_t len)
{
    gw_grpc_frame_prefix(out, (uint32_t)len);
    out[0] = flag;
    memcpy(out + 5, body, len);
    return len + 5;
}

static void test_one_byte_at_a_time(void **state)
{
    struct gw_grpc_decoder d;
    struct sink s = {0};
    uint8_t buf[64];
    size_t n = frame(buf, 0, "hello", 5);

    (void)state;
    n += frame(buf + n, 0, "", 0);
    n += frame(buf + n, 0, "xy", 2);
    gw_grpc_decoder_init(&d, 100);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(gw_grpc_decoder_feed(&d, buf + i, 1, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.lens[0], 5);
    assert_memory_equal(s.data[0], "hello", 5);
    assert_int_equal(s.lens[1], 0);
    assert_int_equal(s.lens[2], 2);
    assert_memory_equal(s.data[2], "xy", 2);
    assert_true(gw_grpc_decoder_idle(&d));
    gw_grpc_decoder_clear(&d);
}

static void test_several_in_one_chunk_and_partial(void **state)
{
    struct gw_grpc_decoder d;
    struct sink s = {0};
    uint8_t buf[64];
    size_t n = frame(buf, 0, "abc", 3);

    (void)state;
    n += frame(buf + n, 0, "defg", 4);
    n += frame(buf + n, 0, "hijkl", 5);
    gw_grpc_decoder_init(&d, 100);
    /* everything but the last 3 bytes: two messages and a partial third */
    assert_int_equal(gw_grpc_decoder_feed(&d, buf, n - 3, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_false(gw_grpc_decoder_idle(&d));
    assert_int_equal(gw_grpc_decoder_feed(&d, buf + n - 3, 3, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_memory_equal(s.data[1], "defg", 4);
    assert_memory_equal(s.data[2], "hijkl", 5);
    assert_true(gw_grpc_decoder_idle(&d));
    gw_grpc_decoder_clear(&d);
}

static void test_zero_length_only(void **state)
{
    struct gw_grpc_decoder d;
    struct sink s = {0};
    uint8_t buf[8];
    size_t n = frame(buf, 0, "", 0);

    (void)state;
    gw_grpc_decoder_init(&d, 0);
    assert_int_equal(gw_grpc_decoder_feed(&d, buf, n, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.lens[0], 0);
    gw_grpc_decoder_clear(&d);
}

static void test_oversized_refused_from_prefix(void **state)
{
    struct gw_grpc_decoder d;
    struct sink s = {0};
    uint8_t prefix[5];

    (void)state;
    gw_grpc_frame_prefix(prefix, 101);
    gw_grpc_decoder_init(&d, 100);
    /* the first four bytes: nothing decided yet */
    assert_int_equal(gw_grpc_decoder_feed(&d, prefix, 4, collect, &s), 0);
    /* the fifth completes the prefix: refused before any body byte arrives */
    assert_int_equal(gw_grpc_decoder_feed(&d, prefix + 4, 1, collect, &s), GW_ETOOBIG);
    assert_null(d.buf);
    assert_int_equal(s.n, 0);
    /* sticky */
    assert_int_equal(gw_grpc_decoder_feed(&d, (const uint8_t *)"x", 1, collect, &s), GW_ETOOBIG);
    gw_grpc_decoder_clear(&d);

    /* a huge declared length allocates nothing either */
    gw_grpc_frame_prefix(prefix, 0xffffffffu);
    gw_grpc_decoder_init(&d, 4u << 20);
    gw_alloc_fail_nth(1); /* any allocation would fail and turn the error into ENOMEM */
    assert_int_equal(gw_grpc_decoder_feed(&d, prefix, 5, collect, &s), GW_ETOOBIG);
    gw_alloc_fail_nth(0);
    gw_grpc_decoder_clear(&d);

    /* exactly the cap is fine */
    {
        uint8_t buf[16];
        size_t n = frame(buf, 0, "0123456789", 10);
        gw_grpc_decoder_init(&d, 10);
        assert_int_equal(gw_grpc_decoder_feed(&d, buf, n, collect, &s), 0);
        assert_int_equal(s.n, 1);
        gw_grpc_decoder_clear(&d);
    }
}

static void test_buffer_grows_with_data(void **state)
{
    struct gw_grpc_decoder d;
    struct sink s = {0};
    uint8_t prefix[5];
    static uint8_t body[100000];

    (void)state;
    memset(body, 'z', sizeof(body));
    gw_grpc_frame_prefix(prefix, sizeof(body));
    gw_grpc_decoder_init(&d, 4u << 20);
    assert_int_equal(gw_grpc_decoder_feed(&d, prefix, 5, collect, &s), 0);
    assert_int_equal(gw_grpc_decoder_feed(&d, body, 1, collect, &s), 0);
    /* a 100000-byte declaration with 1 byte received holds a small buffer only */
    assert_true(d.bufcap <= 16384);
    for (size_t off = 1; off < sizeof(body); off += 777) {
        size_t n = sizeof(body) - off < 777 ? sizeof(body) - off : 777;
        assert_int_equal(gw_grpc_decoder_feed(&d, body + off, n, collect, &s), 0);
    }
    assert_int_equal(s.n, 1);
    assert_int_equal(s.lens[0], sizeof(body));
    assert_memory_equal(s.data[0], body, 64);
    assert_true(gw_grpc_decoder_idle(&d));
    gw_grpc_decoder_clear(&d);
}

/* The message callback may take an assembled message's buffer instead of copying it: the
 * buffer holds exactly the message, the decoder then holds nothing and goes on. */
struct taker {
    struct gw_grpc_decoder *d;
    uint8_t *taken;
    size_t len;
    unsigned n;
};

static int take_cb(void *arg, const uint8_t *msg, size_t len)
{
    struct taker *t = arg;

    t->n++;
    if (msg == t->d->buf) {
        t->taken = gw_grpc_decoder_take(t->d);
        t->len = len;
        assert_ptr_equal(t->taken, msg);
        assert_null(t->d->buf);
        assert_int_equal(t->d->bufcap, 0);
    }
    return 0;
}

static void test_take_assembled_message(void **state)
{
    struct gw_grpc_decoder d;
    struct taker t = {.d = &d};
    uint8_t prefix[5], next[8];
    static uint8_t body[70000];

    (void)state;
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7);
    gw_grpc_frame_prefix(prefix, sizeof(body));
    gw_grpc_decoder_init(&d, 4u << 20);
    assert_int_equal(gw_grpc_decoder_feed(&d, prefix, 5, take_cb, &t), 0);
    for (size_t off = 0; off < sizeof(body); off += 16384) {
        size_t n = sizeof(body) - off < 16384 ? sizeof(body) - off : 16384;
        assert_int_equal(gw_grpc_decoder_feed(&d, body + off, n, take_cb, &t), 0);
    }
    assert_int_equal(t.n, 1);
    assert_non_null(t.taken);
    assert_int_equal(t.len, sizeof(body));
    assert_memory_equal(t.taken, body, sizeof(body));
    gw_free_wipe(t.taken, t.len);
    /* the decoder goes on with the next message, in one chunk: handed over from the chunk */
    t.taken = NULL;
    gw_grpc_frame_prefix(next, 3);
    memcpy(next + 5, "abc", 3);
    assert_int_equal(gw_grpc_decoder_feed(&d, next, 8, take_cb, &t), 0);
    assert_int_equal(t.n, 2);
    assert_null(t.taken);
    gw_grpc_decoder_clear(&d);
}

static void test_compressed_flag(void **state)
{
    struct gw_grpc_decoder d;
    struct sink s = {0};
    uint8_t buf[16];
    size_t n = frame(buf, 1, "abc", 3);

    (void)state;
    gw_grpc_decoder_init(&d, 100);
    assert_int_equal(gw_grpc_decoder_feed(&d, buf, n, collect, &s), GW_EUNIMPL);
    assert_true(d.compressed);
    assert_int_equal(s.n, 0);
    gw_grpc_decoder_clear(&d);

    n = frame(buf, 7, "abc", 3);
    gw_grpc_decoder_init(&d, 100);
    assert_int_equal(gw_grpc_decoder_feed(&d, buf, n, collect, &s), GW_EPROTO);
    gw_grpc_decoder_clear(&d);
}

static int stop_cb(void *arg, const uint8_t *msg, size_t len)
{
    (void)arg;
    (void)msg;
    (void)len;
    return GW_EINVAL;
}

static void test_callback_error_sticky(void **state)
{
    struct gw_grpc_decoder d;
    uint8_t buf[32];
    size_t n = frame(buf, 0, "a", 1);

    (void)state;
    n += frame(buf + n, 0, "b", 1);
    gw_grpc_decoder_init(&d, 100);
    assert_int_equal(gw_grpc_decoder_feed(&d, buf, n, stop_cb, NULL), GW_EINVAL);
    assert_int_equal(gw_grpc_decoder_feed(&d, buf, n, stop_cb, NULL), GW_EINVAL);
    gw_grpc_decoder_clear(&d);
}

static void test_decoder_alloc_failure(void **state)
{
    struct gw_grpc_decoder d;
    struct sink s = {0};
    uint8_t buf[16];
    size_t n = frame(buf, 0, "abcdef", 6);

    (void)state;
    gw_grpc_decoder_init(&d, 100);
    gw_alloc_fail_nth(1);
    /* a split message must be buffered: that allocation fails */
    assert_int_equal(gw_grpc_decoder_feed(&d, buf, n - 2, collect, &s), GW_ENOMEM);
    gw_alloc_fail_nth(0);
    gw_grpc_decoder_clear(&d);
}

static void test_timeout_parse(void **state)
{
    uint64_t ms = 0;

    (void)state;
    assert_int_equal(gw_grpc_timeout_parse("1H", &ms), 0);
    assert_int_equal(ms, 3600000u);
    assert_int_equal(gw_grpc_timeout_parse("2M", &ms), 0);
    assert_int_equal(ms, 120000u);
    assert_int_equal(gw_grpc_timeout_parse("3S", &ms), 0);
    assert_int_equal(ms, 3000u);
    assert_int_equal(gw_grpc_timeout_parse("250m", &ms), 0);
    assert_int_equal(ms, 250u);
    assert_int_equal(gw_grpc_timeout_parse("1500u", &ms), 0);
    assert_int_equal(ms, 2u); /* rounded up */
    assert_int_equal(gw_grpc_timeout_parse("1n", &ms), 0);
    assert_int_equal(ms, 1u);
    assert_int_equal(gw_grpc_timeout_parse("0m", &ms), 0);
    assert_int_equal(ms, 0u);
    assert_int_equal(gw_grpc_timeout_parse("99999999H", &ms), 0);
    assert_int_equal(ms, 99999999ull * 3600000u);

    assert_int_equal(gw_grpc_timeout_parse("", &ms), GW_EINVAL);
    assert_int_equal(gw_grpc_timeout_parse("S", &ms), GW_EINVAL);
    assert_int_equal(gw_grpc_timeout_parse("10", &ms), GW_EINVAL);
    assert_int_equal(gw_grpc_timeout_parse("10x", &ms), GW_EINVAL);
    assert_int_equal(gw_grpc_timeout_parse("10SS", &ms), GW_EINVAL);
    assert_int_equal(gw_grpc_timeout_parse("123456789S", &ms), GW_EINVAL); /* 9 digits */
    assert_int_equal(gw_grpc_timeout_parse("-1S", &ms), GW_EINVAL);
    assert_int_equal(gw_grpc_timeout_parse(" 1S", &ms), GW_EINVAL);
}

static void test_percent_encode(void **state)
{
    char out[64];

    (void)state;
    gw_grpc_percent_encode("plain text: ok", out, sizeof(out));
    assert_string_equal(out, "plain text: ok");
    gw_grpc_percent_encode("100% \xe4\xbd\xa0\n", out, sizeof(out));
    assert_string_equal(out, "100%25 %E4%BD%A0%0A");
    /* truncation never splits an escape */
    assert_int_equal(gw_grpc_percent_encode("ab\xff", out, 5), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(gw_grpc_percent_encode("ab\xff", out, 6), 5);
    assert_string_equal(out, "ab%FF");
}

static void add(struct gw_grpc_headers *h, const char *n, const char *v)
{
    gw_grpc_headers_add(h, (const uint8_t *)n, strlen(n), (const uint8_t *)v, strlen(v));
}

static void good_headers(struct gw_grpc_headers *h, uint32_t cap)
{
    gw_grpc_headers_init(h, cap);
    add(h, ":method", "POST");
    add(h, ":scheme", "https");
    add(h, ":path", "/a.B/C");
    add(h, "content-type", "application/grpc+proto");
    add(h, "te", "trailers");
}

static void test_headers_check(void **state)
{
    struct gw_grpc_headers h;
    struct gw_grpc_verdict v;
    uint64_t t = 0;

    (void)state;
    good_headers(&h, 16384);
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.status, GW_GRPC_OK);
    assert_int_equal(t, 60000u); /* no grpc-timeout: the cap */

    good_headers(&h, 16384);
    add(&h, "grpc-timeout", "5S");
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.status, GW_GRPC_OK);
    assert_int_equal(t, 5000u);

    good_headers(&h, 16384);
    add(&h, "grpc-timeout", "2H");
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(t, 60000u); /* capped */

    good_headers(&h, 16384);
    add(&h, "grpc-timeout", "soon");
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.status, GW_GRPC_INVALID_ARGUMENT);

    gw_grpc_headers_init(&h, 16384);
    add(&h, ":method", "GET");
    add(&h, ":path", "/a.B/C");
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.http_status, 405);

    good_headers(&h, 16384);
    h.has_ctype = false;
    add(&h, "content-type", "text/html");
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.http_status, 415);

    good_headers(&h, 16384);
    add(&h, "grpc-encoding", "gzip");
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.status, GW_GRPC_UNIMPLEMENTED);

    /* te absent is tolerated */
    gw_grpc_headers_init(&h, 16384);
    add(&h, ":method", "POST");
    add(&h, ":path", "/a.B/C");
    add(&h, "content-type", "application/grpc");
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.status, GW_GRPC_OK);

    /* header list over the cap */
    good_headers(&h, 1024);
    for (int i = 0; i < 20; i++)
        add(&h, "x-filler", "0123456789012345678901234567890123456789");
    assert_true(h.too_big);
    gw_grpc_headers_check(&h, 60000, &v, &t);
    assert_int_equal(v.status, GW_GRPC_RESOURCE_EXHAUSTED);

    /* request ids */
    good_headers(&h, 16384);
    add(&h, "x-request-id", "abc-123_X.y");
    assert_true(h.has_request_id);
    good_headers(&h, 16384);
    add(&h, "x-request-id", "bad id");
    assert_false(h.has_request_id);
    assert_false(gw_grpc_request_id_valid(""));
    assert_false(gw_grpc_request_id_valid(
        "01234567890123456789012345678901234567890123456789012345678901234"));
    assert_true(gw_grpc_request_id_valid(
        "0123456789012345678901234567890123456789012345678901234567890123"));
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(gw_utf8_valid("", 0));
    assert_true(gw_utf8_valid("abc", 3));
    assert_true(gw_utf8_valid("\xe5\xbc\xa0\xe4\xb8\x89", 6)); /* 张三 */
    assert_true(gw_utf8_valid("\xf0\x9f\x98\x80", 4));         /* U+1F600 */
    assert_true(gw_utf8_valid("\xf4\x8f\xbf\xbf", 4));         /* U+10FFFF */
    assert_true(gw_utf8_valid("\xed\x9f\xbf", 3));             /* U+D7FF */
    assert_true(gw_utf8_valid("\xee\x80\x80", 3));             /* U+E000 */
    assert_false(gw_utf8_valid("\xc0\xaf", 2));                /* overlong '/' */
    assert_false(gw_utf8_valid("\xe0\x80\xaf", 3));            /* overlong */
    assert_false(gw_utf8_valid("\xf0\x80\x80\xaf", 4));        /* overlong */
    assert_false(gw_utf8_valid("\xed\xa0\x80", 3));            /* surrogate U+D800 */
    assert_false(gw_utf8_valid("\xed\xbf\xbf", 3));            /* surrogate U+DFFF */
    assert_false(gw_utf8_valid("\xf4\x90\x80\x80", 4));        /* U+110000 */
    assert_false(gw_utf8_valid("\xf5\x80\x80\x80", 4));
    assert_false(gw_utf8_valid("\x80", 1));         /* lone continuation */
    assert_false(gw_utf8_valid("\xe5\xbc", 2));     /* truncated */
    assert_false(gw_utf8_valid("\xe5\x41\xa0", 3)); /* bad continuation */
    assert_false(gw_utf8_valid("\xff", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_byte_at_a_time),
        cmocka_unit_test(test_several_in_one_chunk_and_partial),
        cmocka_unit_test(test_zero_length_only),
        cmocka_unit_test(test_oversized_refused_from_prefix),
        cmocka_unit_test(test_buffer_grows_with_data),
        cmocka_unit_test(test_take_assembled_message),
        cmocka_unit_test(test_compressed_flag),
        cmocka_unit_test(test_callback_error_sticky),
        cmocka_unit_test(test_decoder_alloc_failure),
        cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_percent_encode),
        cmocka_unit_test(test_headers_check),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
