/* test_wirecheck.c: the string checker on protobuf wire bytes (wirecheck.h), fed hand-built and
 * malformed messages: broken framing, wrong wire types, groups, nesting over the cap, unknown
 * fields, every kind of bad UTF-8, NUL, good multi-byte text, and the reported field paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "grpc/health/v1/health.pb-c.h"
#include "waygate/v1/intake.pb-c.h"

#include "wirecheck.h"

/* ---- a tiny wire-format writer ---- */

struct buf {
    uint8_t b[4096];
    size_t n;
};

static void put(struct buf *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof(w->b));
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void varint(struct buf *w, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            c |= 0x80;
        put(w, &c, 1);
    } while (v);
}

static void tag(struct buf *w, unsigned field, unsigned wt)
{
    varint(w, (uint64_t)field << 3 | wt);
}

/* A length-delimited field holding n bytes of p. */
static void ld(struct buf *w, unsigned field, const void *p, size_t n)
{
    tag(w, field, 2);
    varint(w, n);
    put(w, p, n);
}

static void str(struct buf *w, unsigned field, const char *s)
{
    ld(w, field, s, strlen(s));
}

static void sub(struct buf *w, unsigned field, const struct buf *m)
{
    ld(w, field, m->b, m->n);
}

static const ProtobufCMessageDescriptor *const HEALTH =
    &grpc__health__v1__health_check_request__descriptor; /* string service = 1 */
static const ProtobufCMessageDescriptor *const BATCH =
    &waygate__v1__submit_batch_request__descriptor; /* repeated Waybill waybills = 1 */

static int check(const ProtobufCMessageDescriptor *d, const struct buf *w, struct gw_fault *f)
{
    return gw_wirecheck(d, w->b, w->n, f);
}

static void expect_fault(const ProtobufCMessageDescriptor *d, const struct buf *w,
                         const char *field, enum gw_rule rule)
{
    struct gw_fault f;
    int rc = check(d, w, &f);
    if (rc != GW_EINVAL)
        fail_msg("expected a fault at %s (rule %d), got %d", field, (int)rule, rc);
    assert_int_equal(f.code, GW_EINVAL);
    assert_string_equal(f.field, field);
    assert_int_equal(f.rule, rule);
}

static void expect_ok(const ProtobufCMessageDescriptor *d, const struct buf *w)
{
    struct gw_fault f;
    int rc = check(d, w, &f);
    if (rc != 0)
        fail_msg("refused: %s rule %d", f.field, (int)f.rule);
    assert_int_equal(f.code, 0);
}

/* A service name made of the given bytes. */
static void health_of(struct buf *w, const void *p, size_t n)
{
    memset(w, 0, sizeof(*w));
    ld(w, 1, p, n);
}

/* ---- framing ---- */

static void test_truncated_varints(void **state)
{
    struct buf w = {0};
    (void)state;
    put(&w, "\x8a", 1); /* a tag whose varint never ends */
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    memset(&w, 0, sizeof(w));
    tag(&w, 1, 2);
    put(&w, "\x85", 1); /* the length's varint never ends */
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    memset(&w, 0, sizeof(w));
    tag(&w, 7, 0); /* an unknown varint field, cut short */
    put(&w, "\xff\xff", 2);
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    memset(&w, 0, sizeof(w));
    tag(&w, 7, 0); /* 11 continuation bytes: longer than any varint */
    put(&w, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12);
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);
}

static void test_lengths_past_the_end(void **state)
{
    struct buf w = {0}, wb = {0}, party = {0};
    (void)state;
    put(&w,
        "\x0a\x7f"
        "abc",
        5); /* service: 127 bytes announced, 3 there */
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    memset(&w, 0, sizeof(w));
    tag(&w, 7, 1); /* fixed64 with 3 bytes left */
    put(&w, "abc", 3);
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    memset(&w, 0, sizeof(w));
    tag(&w, 7, 5); /* fixed32 with 2 bytes left */
    put(&w, "ab", 2);
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    /* inside a submessage: the length is checked against the submessage, and the fault names
     * the submessage */
    put(&party,
        "\x0a\x09"
        "abc",
        5);
    sub(&wb, 2, &party);
    memset(&w, 0, sizeof(w));
    sub(&w, 1, &wb);
    expect_fault(BATCH, &w, "waybills[0].sender", GW_RULE_PROTOBUF);
}

static void test_wrong_wire_type_for_string_or_message(void **state)
{
    struct buf w = {0};
    (void)state;
    tag(&w, 1, 0); /* service sent as a varint */
    varint(&w, 5);
    expect_fault(HEALTH, &w, "service", GW_RULE_WIRE_TYPE);

    memset(&w, 0, sizeof(w));
    tag(&w, 1, 5); /* service sent as fixed32 */
    put(&w, "abcd", 4);
    expect_fault(HEALTH, &w, "service", GW_RULE_WIRE_TYPE);

    memset(&w, 0, sizeof(w));
    tag(&w, 1, 1); /* waybills[0] sent as fixed64 */
    put(&w, "abcdefgh", 8);
    expect_fault(BATCH, &w, "waybills[0]", GW_RULE_WIRE_TYPE);

    memset(&w, 0, sizeof(w));
    tag(&w, 1, 6); /* wire type 6 does not exist */
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    memset(&w, 0, sizeof(w));
    tag(&w, 0, 2); /* field number 0 does not exist */
    varint(&w, 0);
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);
}

static void test_groups_refused(void **state)
{
    struct buf w = {0};
    (void)state;
    tag(&w, 7, 3); /* start group ... */
    tag(&w, 7, 4); /* ... end group: protobuf-c does not support groups */
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);

    memset(&w, 0, sizeof(w));
    tag(&w, 7, 4); /* a stray end group */
    expect_fault(HEALTH, &w, "request", GW_RULE_PROTOBUF);
}

static void test_unknown_fields_skipped(void **state)
{
    struct buf w = {0};
    (void)state;
    str(&w, 1, "waygate.v1.WaybillIntake");
    tag(&w, 9, 0);
    varint(&w, 300);
    tag(&w, 10, 1);
    put(&w, "12345678", 8);
    tag(&w, 11, 5);
    put(&w, "1234", 4);
    ld(&w, 12, "\xff\x00\xfe", 3); /* unknown field: its bytes are not ours to judge */
    expect_ok(HEALTH, &w);
    expect_ok(HEALTH, &(struct buf){0}); /* the empty message */
}

/* ---- nesting: a self-referencing message type ---- */

static const ProtobufCMessageDescriptor node_desc;
static const ProtobufCFieldDescriptor node_fields[2] = {
    {"name", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, 0, NULL, NULL, 0, 0, NULL, NULL},
    {"child", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE, 0, 0, &node_desc, NULL, 0, 0, NULL,
     NULL},
};
static const unsigned node_by_name[2] = {1, 0};
static const ProtobufCIntRange node_ranges[2] = {{1, 0}, {0, 2}};
static const ProtobufCMessageDescriptor node_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "t.Node",
    "Node",
    "Node",
    "t",
    sizeof(ProtobufCMessage),
    2,
    node_fields,
    node_by_name,
    1,
    node_ranges,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* depth nested Nodes, the innermost carrying name (n bytes). */
static void nest(struct buf *out, int depth, const char *name, size_t n)
{
    static struct buf a, b;
    struct buf *cur = &a, *next = &b;

    memset(cur, 0, sizeof(*cur));
    ld(cur, 1, name, n);
    for (int i = 0; i < depth; i++) {
        memset(next, 0, sizeof(*next));
        sub(next, 2, cur);
        struct buf *t = cur;
        cur = next;
        next = t;
    }
    *out = *cur;
}

static void test_nesting_cap(void **state)
{
    struct buf w;
    struct gw_fault f;
    char want[GW_FAULT_FIELD_MAX], msg[256];
    (void)state;

    nest(&w, GW_WIRECHECK_MAX_DEPTH, "ok", 2); /* at the cap: fine */
    expect_ok(&node_desc, &w);

    nest(&w, GW_WIRECHECK_MAX_DEPTH + 1, "ok", 2); /* one deeper: refused */
    assert_int_equal(check(&node_desc, &w, &f), GW_EINVAL);
    assert_int_equal(f.rule, GW_RULE_NESTING);
    assert_int_equal(f.limit, GW_WIRECHECK_MAX_DEPTH);
    snprintf(want, sizeof(want), "child");
    assert_int_equal(strncmp(f.field, want, strlen(want)), 0);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_non_null(strstr(msg, "nests messages deeper than 32 levels"));

    nest(&w, 3, "a\xc0\xafz", 4); /* the path of a deep string */
    expect_fault(&node_desc, &w, "child.child.child.name", GW_RULE_UTF8);
}

/* ---- UTF-8 and NUL ---- */

static void test_invalid_utf8_refused(void **state)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
    } bad[] = {
        {"overlong '/' (2 bytes)", "\xc0\xaf", 2},
        {"overlong NUL", "\xc0\x80", 2},
        {"overlong (3 bytes)", "\xe0\x80\xaf", 3},
        {"overlong (4 bytes)", "\xf0\x80\x80\xaf", 4},
        {"high surrogate U+D800", "\xed\xa0\x80", 3},
        {"low surrogate U+DFFF", "\xed\xbf\xbf", 3},
        {"above U+10FFFF", "\xf4\x90\x80\x80", 4},
        {"F5 lead byte", "\xf5\x80\x80\x80", 4},
        {"truncated 2-byte", "ab\xc3", 3},
        {"truncated 3-byte", "\xe5\xbc", 2},
        {"truncated 4-byte", "\xf0\x9f\x98", 3},
        {"stray continuation", "a\x80z", 3},
        {"FF byte", "\xff", 1},
    };
    struct buf w;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct gw_fault f;
        health_of(&w, bad[i].bytes, bad[i].n);
        if (check(HEALTH, &w, &f) != GW_EINVAL)
            fail_msg("accepted: %s", bad[i].what);
        assert_string_equal(f.field, "service");
        assert_int_equal(f.rule, GW_RULE_UTF8);
    }
}

static void test_nul_refused(void **state)
{
    struct buf w;
    (void)state;
    health_of(&w, "ab\0cd", 5);
    expect_fault(HEALTH, &w, "service", GW_RULE_NUL);
    health_of(&w, "\0", 1);
    expect_fault(HEALTH, &w, "service", GW_RULE_NUL);
}

static void test_valid_multibyte_accepted(void **state)
{
    static const char *const good[] = {
        "张三",             /* 3-byte CJK */
        "Zoë Ångström",     /* 2-byte Latin */
        "𠀀 and 😀",         /* 4-byte: CJK Ext. B, emoji */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "",
    };
    struct buf w;
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        health_of(&w, good[i], strlen(good[i]));
        expect_ok(HEALTH, &w);
    }
}

/* ---- paths in a nested repeated field ---- */

static void waybill_with_names(struct buf *wb, const char *sender, size_t sn, const char *rcpt,
                               size_t rn)
{
    struct buf s = {0}, r = {0};
    memset(wb, 0, sizeof(*wb));
    str(wb, 1, "WG1031000001");
    ld(&s, 1, sender, sn);
    str(&s, 2, "13800138000");
    ld(&r, 1, rcpt, rn);
    sub(wb, 2, &s);
    sub(wb, 3, &r);
    tag(wb, 5, 0); /* pickup_time: a varint field between the strings */
    varint(wb, 1700000000);
}

static void test_path_of_nested_repeated_field(void **state)
{
    struct buf w = {0}, wb;
    struct gw_fault f;
    char msg[256];
    (void)state;

    for (int i = 0; i < 3; i++) {
        waybill_with_names(&wb, "李四", strlen("李四"), "王五", strlen("王五"));
        sub(&w, 1, &wb);
    }
    waybill_with_names(&wb, "李四", strlen("李四"), "\xe7\x8e\x8b\xff", 4);
    sub(&w, 1, &wb); /* waybills[3]: recipient name not UTF-8 */
    expect_fault(BATCH, &w, "waybills[3].recipient.name", GW_RULE_UTF8);

    /* the message err.c writes for it names the path and the rule, never the bytes */
    assert_int_equal(check(BATCH, &w, &f), GW_EINVAL);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, "waybills[3].recipient.name: is not valid UTF-8");

    memset(&w, 0, sizeof(w));
    waybill_with_names(&wb, "李四", strlen("李四"), "王五", strlen("王五"));
    sub(&w, 1, &wb);
    waybill_with_names(&wb, "李\0四", 4, "王五", strlen("王五"));
    sub(&w, 1, &wb); /* waybills[1]: NUL in the sender's name */
    expect_fault(BATCH, &w, "waybills[1].sender.name", GW_RULE_NUL);

    /* repeated strings are indexed too */
    {
        Waygate__V1__WaybillView v = WAYGATE__V1__WAYBILL_VIEW__INIT;
        memset(&w, 0, sizeof(w));
        str(&w, 5, "sender.name");
        ld(&w, 5, "ph\xc3", 3);
        expect_fault(v.base.descriptor, &w, "redacted_fields[1]", GW_RULE_UTF8);
    }

    /* all good: accepted, fault left empty */
    memset(&w, 0, sizeof(w));
    for (int i = 0; i < 5; i++) {
        waybill_with_names(&wb, "欧阳娜娜", strlen("欧阳娜娜"), "𠀀二三", strlen("𠀀二三"));
        sub(&w, 1, &wb);
    }
    expect_ok(BATCH, &w);
}

static void test_null_fault_and_null_buffer(void **state)
{
    struct buf w;
    (void)state;
    health_of(&w, "\xff", 1);
    assert_int_equal(gw_wirecheck(HEALTH, w.b, w.n, NULL), GW_EINVAL);
    assert_int_equal(gw_wirecheck(HEALTH, NULL, 0, NULL), 0);
    assert_int_equal(gw_wirecheck(HEALTH, NULL, 3, NULL), GW_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_varints),
        cmocka_unit_test(test_lengths_past_the_end),
        cmocka_unit_test(test_wrong_wire_type_for_string_or_message),
        cmocka_unit_test(test_groups_refused),
        cmocka_unit_test(test_unknown_fields_skipped),
        cmocka_unit_test(test_nesting_cap),
        cmocka_unit_test(test_invalid_utf8_refused),
        cmocka_unit_test(test_nul_refused),
        cmocka_unit_test(test_valid_multibyte_accepted),
        cmocka_unit_test(test_path_of_nested_repeated_field),
        cmocka_unit_test(test_null_fault_and_null_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
