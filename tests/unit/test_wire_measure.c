/* test_wire_measure.c: what a request would cost before it is unpacked (wirecheck.h,
 * gw_wire_measure and gw_wire_count; issue 10, finding 2). The measure must never be below what
 * protobuf-c 1.4 really allocates (counted here with an allocator that rounds like the call's
 * arena), for every message of the API filled field by field, for unknown fields and for the
 * batch bomb of empty items; real traffic must stay within the call's unpack bound (8x the wire
 * size + 64 KiB, rpc/call.c) while the bomb goes far over it; a batch's items are counted on the
 * wire without unpacking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc/health/v1/health.pb-c.h"
#include "waygate/v1/admin.pb-c.h"
#include "waygate/v1/backend.pb-c.h"
#include "waygate/v1/compliance.pb-c.h"
#include "waygate/v1/intake.pb-c.h"
#include "waygate/v1/query.pb-c.h"

#include "wirecheck.h"

#define UNPACK_FACTOR 8u /* rpc/call.c */
#define UNPACK_BASE (64u * 1024u)

/* ---- protobuf-c's real allocations, rounded to 16 as the call's arena rounds them ---- */

static size_t allocated;

static void *count_alloc(void *data, size_t size)
{
    (void)data;
    allocated += (size + 15u) & ~(size_t)15u;
    return malloc(size ? size : 1);
}

static void count_free(void *data, void *p)
{
    (void)data;
    free(p);
}

static ProtobufCAllocator counting = {count_alloc, count_free, NULL};

/* Unpacks buf and returns the bytes protobuf-c allocated for it. */
static size_t real_cost(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len)
{
    ProtobufCMessage *m;

    allocated = 0;
    m = protobuf_c_message_unpack(d, &counting, len, buf);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, &counting);
    return allocated;
}

/* ---- every field of a message set, recursively (test objects come from a bump pool) ---- */

static uint8_t pool[1 << 22];
static size_t pool_used;
static unsigned counter;

static void *take(size_t n)
{
    void *p;

    n = (n + 15u) & ~(size_t)15u;
    assert_true(pool_used + n <= sizeof(pool));
    p = pool + pool_used;
    pool_used += n;
    memset(p, 0, n);
    return p;
}

/* A string of 4 to 27 characters: names, phones, addresses, ids. */
static char *text(void)
{
    size_t n = 4 + counter++ % 24;
    char *s = take(n + 1);

    memset(s, 'a' + (char)(counter % 26), n);
    return s;
}

static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d, int depth, size_t nrep);

static void set_value(const ProtobufCFieldDescriptor *f, void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        *(char **)p = text();
        return;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        b->len = 4 + counter++ % 40;
        b->data = take(b->len);
        memset(b->data, 0x5a, b->len);
        return;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)p = depth < 4 ? fill(f->descriptor, depth + 1, 2) : NULL;
        return;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        *(int *)p = e->values[e->n_values - 1].value;
        return;
    }
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)p = 1;
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)p = 1700000000000u + counter++;
        return;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)p = 1.5;
        return;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)p = 1.5f;
        return;
    default:
        *(uint32_t *)p = 100000u + counter++;
        return;
    }
}

static size_t value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    default:
        return 4;
    }
}

static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d, int depth, size_t nrep)
{
    uint8_t *m = take(d->sizeof_message);

    d->message_init((ProtobufCMessage *)m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = f->type == PROTOBUF_C_TYPE_MESSAGE && depth > 0 ? 2 : nrep;
            uint8_t *arr = take(n * value_size(f));
            for (size_t k = 0; k < n; k++)
                set_value(f, arr + k * value_size(f), depth);
            *(size_t *)(m + f->quantifier_offset) = n;
            *(void **)(m + f->offset) = arr;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = (uint32_t *)(m + f->quantifier_offset);
            if (*which != 0)
                continue;
            *which = f->id;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0) {
            *(protobuf_c_boolean *)(m + f->quantifier_offset) = 1;
        }
        set_value(f, m + f->offset, depth);
    }
    return (ProtobufCMessage *)m;
}

static size_t pack(const ProtobufCMessage *m, uint8_t **out)
{
    size_t n = protobuf_c_message_get_packed_size(m);

    *out = malloc(n ? n : 1);
    assert_non_null(*out);
    assert_int_equal(protobuf_c_message_pack(m, *out), n);
    return n;
}

/* Measures and unpacks one serialised message; checks the measure is an upper bound. Returns
 * the measure. */
static size_t check_bound(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len)
{
    struct gw_wire_measure wm;
    struct gw_fault f;
    size_t real;

    assert_int_equal(gw_wire_measure(d, buf, len, &wm, &f), 0);
    real = real_cost(d, buf, len);
    if (wm.unpacked < real)
        fail_msg("%s: measured %zu < allocated %zu (%zu wire bytes)", d->name, wm.unpacked, real,
                 len);
    return wm.unpacked;
}

static const ProtobufCMessageDescriptor *const requests[] = {
    &waygate__v1__login_request__descriptor,
    &waygate__v1__change_password_request__descriptor,
    &waygate__v1__create_account_request__descriptor,
    &waygate__v1__disable_account_request__descriptor,
    &waygate__v1__issue_segment_request__descriptor,
    &waygate__v1__rotate_key_request__descriptor,
    &waygate__v1__deliver_request__descriptor,
    &waygate__v1__deliver_response__descriptor,
    &waygate__v1__waybill_view__descriptor,
    &waygate__v1__request_bulk_request__descriptor,
    &waygate__v1__approve_bulk_request__descriptor,
    &waygate__v1__get_bulk_request__descriptor,
    &waygate__v1__run_bulk_request__descriptor,
    &waygate__v1__export_audit_request__descriptor,
    &waygate__v1__report_request__descriptor,
    &waygate__v1__request_lawful_access_request__descriptor,
    &waygate__v1__decide_lawful_access_request__descriptor,
    &waygate__v1__get_lawful_case_request__descriptor,
    &waygate__v1__submit_request__descriptor,
    &waygate__v1__submit_batch_request__descriptor,
    &waygate__v1__record_scan_request__descriptor,
    &waygate__v1__get_request__descriptor,
    &waygate__v1__search_request__descriptor,
    &waygate__v1__reveal_request__descriptor,
    &grpc__health__v1__health_check_request__descriptor,
};

/* ---- tests ---- */

/* Every request of the API, every field set: the measure is an upper bound, and within the
 * call's unpack bound (real requests are never refused by it). */
static void test_every_message_bounded(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        for (size_t nrep = 1; nrep <= 40; nrep += 13) {
            uint8_t *buf;
            size_t len, est;

            pool_used = 0;
            len = pack(fill(requests[i], 0, nrep), &buf);
            est = check_bound(requests[i], buf, len);
            if (est > UNPACK_FACTOR * len + UNPACK_BASE)
                fail_msg("%s: measure %zu over the unpack bound for %zu bytes", requests[i]->name,
                         est, len);
            free(buf);
        }
    }
}

/* A full batch of complete waybills: well within the bound, and no more than 4x its wire. */
static void test_full_batch_ratio(void **state)
{
    uint8_t *buf;
    size_t len, est;

    (void)state;
    pool_used = 0;
    len = pack(fill(&waygate__v1__submit_batch_request__descriptor, 0, 256), &buf);
    est = check_bound(&waygate__v1__submit_batch_request__descriptor, buf, len);
    print_message("256 complete waybills: %zu wire bytes, measure %zu (%.2fx)\n", len, est,
                  (double)est / (double)len);
    assert_true(est <= 4 * len);
    free(buf);
}

/* The finding's bomb: empty items, 2 wire bytes each. The measure stays an upper bound and is
 * far over the unpack bound, so the call refuses it without unpacking. */
static void test_empty_item_bomb(void **state)
{
    size_t items[] = {1, 17, 1000, 100000};

    (void)state;
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        size_t len = 2 * items[i], est;
        uint8_t *buf = malloc(len);

        assert_non_null(buf);
        for (size_t k = 0; k < items[i]; k++) {
            buf[2 * k] = 0x0a; /* field 1 (waybills), length-delimited */
            buf[2 * k + 1] = 0x00;
        }
        est = check_bound(&waygate__v1__submit_batch_request__descriptor, buf, len);
        if (items[i] >= 1000)
            assert_true(est > UNPACK_FACTOR * len + UNPACK_BASE);
        if (items[i] == 100000)
            print_message("100000 empty items: %zu wire bytes, measure %zu (%.0fx)\n", len, est,
                          (double)est / (double)len);
        free(buf);
    }
}

/* Unknown fields are kept by protobuf-c (a record and a copy each): measured too. */
static void test_unknown_fields_measured(void **state)
{
    uint8_t buf[4096];
    size_t n = 0;

    (void)state;
    for (int i = 0; i < 300; i++) {
        buf[n++] = (uint8_t)((15 << 3) | 0); /* field 15, varint */
        buf[n++] = 0x81;
        buf[n++] = 0x01;
        buf[n++] = (uint8_t)((14 << 3) | 2); /* field 14, 3 bytes */
        buf[n++] = 3;
        buf[n++] = 'a';
        buf[n++] = 'b';
        buf[n++] = 'c';
        buf[n++] = (uint8_t)((13 << 3) | 5); /* field 13, fixed32 */
        memset(buf + n, 1, 4);
        n += 4;
    }
    assert_true(n <= sizeof(buf));
    (void)check_bound(&grpc__health__v1__health_check_request__descriptor, buf, n);
}

/* A string field sent many times: protobuf-c keeps the last, but allocates for each. */
static void test_repeated_singular_string_measured(void **state)
{
    uint8_t buf[3000];
    size_t n = 0;

    (void)state;
    for (int i = 0; i < 500; i++) {
        buf[n++] = 0x0a; /* HealthCheckRequest.service */
        buf[n++] = 3;
        buf[n++] = 'x';
        buf[n++] = 'y';
        buf[n++] = 'z';
    }
    (void)check_bound(&grpc__health__v1__health_check_request__descriptor, buf, n);
}

static void test_count_top_level(void **state)
{
    uint8_t *buf;
    size_t len, count = 99;

    (void)state;
    pool_used = 0;
    len = pack(fill(&waygate__v1__submit_batch_request__descriptor, 0, 37), &buf);
    assert_int_equal(gw_wire_count(buf, len, 1, &count), 0);
    assert_int_equal(count, 37); /* the items' own fields are not counted */
    assert_int_equal(gw_wire_count(buf, len, 2, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(gw_wire_count(buf, 0, 1, &count), 0);
    assert_int_equal(gw_wire_count(NULL, 0, 1, &count), 0); /* an empty message, no buffer */
    assert_int_equal(count, 0);
    assert_int_equal(count, 0);
    free(buf);
}

static void test_count_every_wire_type(void **state)
{
    /* f1 varint, f1 fixed64, f2 len 2, f1 fixed32, f1 len 0 */
    static const uint8_t ok[] = {0x08, 0x96, 0x01, 0x09, 1,    2, 3, 4, 5, 6,    7, 8,
                                 0x12, 2,    'h',  'i',  0x0d, 1, 2, 3, 4, 0x0a, 0};
    size_t count;

    (void)state;
    assert_int_equal(gw_wire_count(ok, sizeof(ok), 1, &count), 0);
    assert_int_equal(count, 4);
    assert_int_equal(gw_wire_count(ok, sizeof(ok), 2, &count), 0);
    assert_int_equal(count, 1);
}

static void test_count_broken_framing(void **state)
{
    static const uint8_t past_end[] = {0x0a, 0x00, 0x0a, 0x05, 'a'};
    static const uint8_t truncated_varint[] = {0x0a, 0x00, 0x08, 0x80};
    static const uint8_t group[] = {0x0b, 0x0c};
    static const uint8_t field_zero[] = {0x02, 0x00};
    static const uint8_t short_fixed[] = {0x0d, 1, 2};
    size_t count;

    (void)state;
    assert_int_equal(gw_wire_count(past_end, sizeof(past_end), 1, &count), GW_EINVAL);
    assert_int_equal(count, 1);
    assert_int_equal(gw_wire_count(truncated_varint, sizeof(truncated_varint), 1, &count),
                     GW_EINVAL);
    assert_int_equal(gw_wire_count(group, sizeof(group), 1, &count), GW_EINVAL);
    assert_int_equal(gw_wire_count(field_zero, sizeof(field_zero), 1, &count), GW_EINVAL);
    assert_int_equal(gw_wire_count(short_fixed, sizeof(short_fixed), 1, &count), GW_EINVAL);
}

/* The early stops (the loop not held by one maximal message): the count stops past its max, the
 * measure once what it has counted exceeds its max; both walk only a prefix of 2 MiB of empty
 * fields, and agree with the full walk on the outcome. The broken framing after the stop point is
 * never reached. */
static void test_early_stops_walk_a_prefix(void **state)
{
    size_t n = 1u << 20, len = 2 * n + 2, count = 0, bound = 8 * len + 65536;
    uint8_t *buf = malloc(len), *inner;
    struct gw_wire_measure full, part;
    struct gw_fault f;

    (void)state;
    assert_non_null(buf);
    for (size_t k = 0; k < n; k++) {
        buf[2 * k] = 0x0a;
        buf[2 * k + 1] = 0x00;
    }
    buf[len - 2] = 0x0a; /* a length past the end: broken framing at the very end */
    buf[len - 1] = 0x05;
    assert_int_equal(gw_wire_count(buf, len, 1, &count), GW_EINVAL); /* the full walk sees it */
    assert_int_equal(gw_wire_count_max(buf, len, 1, 256, &count), 0);
    assert_int_equal(count, 257);
    assert_int_equal(gw_wire_count_max(buf, 2 * 100, 1, 256, &count), 0);
    assert_int_equal(count, 100); /* under the max: counted to the end */

    /* a Submit whose waybill repeats an empty waybill_no n times */
    inner = buf; /* the same bytes read as Waybill fields (field 1, waybill_no) */
    assert_int_equal(gw_wire_measure(&waygate__v1__waybill__descriptor, inner, 2 * n, &full, &f),
                     0);
    assert_true(full.unpacked > bound);
    assert_int_equal(full.fields, n);
    assert_int_equal(
        gw_wire_measure_max(&waygate__v1__waybill__descriptor, inner, len, bound, &part, &f), 0);
    assert_true(part.unpacked > bound); /* refused by the caller, as the full measure is */
    assert_true(part.fields < n / 2);   /* after less than half of it */
    assert_true(part.fields * 64 + 65536 > bound / 2);
    /* without the stop the broken end is found */
    assert_int_equal(gw_wire_measure(&waygate__v1__waybill__descriptor, inner, len, &full, &f),
                     GW_EINVAL);
    /* under the max: the same as the full measure */
    assert_int_equal(
        gw_wire_measure_max(&waygate__v1__waybill__descriptor, inner, 200, bound, &part, &f), 0);
    assert_int_equal(gw_wire_measure(&waygate__v1__waybill__descriptor, inner, 200, &full, &f), 0);
    assert_int_equal(part.unpacked, full.unpacked);
    assert_int_equal(part.fields, full.fields);
    free(buf);
}

/* The measure walks with the same checks as gw_wirecheck. */
static void test_measure_faults_like_wirecheck(void **state)
{
    static const uint8_t bad_utf8[] = {0x0a, 0x02, 0xc3, 0x28};
    struct gw_wire_measure wm;
    struct gw_fault f;

    (void)state;
    assert_int_equal(gw_wire_measure(&grpc__health__v1__health_check_request__descriptor, bad_utf8,
                                     sizeof(bad_utf8), &wm, &f),
                     GW_EINVAL);
    assert_int_equal(f.rule, GW_RULE_UTF8);
    assert_int_equal(
        gw_wire_measure(&grpc__health__v1__health_check_request__descriptor, NULL, 0, &wm, &f), 0);
    assert_true(wm.unpacked >= sizeof(Grpc__Health__V1__HealthCheckRequest));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_bounded),
        cmocka_unit_test(test_full_batch_ratio),
        cmocka_unit_test(test_empty_item_bomb),
        cmocka_unit_test(test_unknown_fields_measured),
        cmocka_unit_test(test_repeated_singular_string_measured),
        cmocka_unit_test(test_count_top_level),
        cmocka_unit_test(test_early_stops_walk_a_prefix),
        cmocka_unit_test(test_count_every_wire_type),
        cmocka_unit_test(test_count_broken_framing),
        cmocka_unit_test(test_measure_faults_like_wirecheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
