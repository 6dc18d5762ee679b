/* wirecheck.c: the walk over protobuf wire bytes that checks every string field and measures
 * what unpacking would cost, and the count of a top-level field (wirecheck.h). Invariants: never
 * reads outside buf[0..len); recursion is bounded by GW_WIRECHECK_MAX_DEPTH; a fault names a
 * field path and a rule, never bytes of the message; the measure is never below what protobuf-c
 * 1.4 allocates to unpack the message (tests/unit/test_wirecheck.c compares them). */
#include "wirecheck.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

#define ROOT "request"
#define PATH_MAX_LEN 256
#define COUNTED_FIELDS 128 /* repeated fields past this descriptor index get no [index] */

enum wire_type {
    WIRE_VARINT = 0,
    WIRE_FIXED64 = 1,
    WIRE_LEN = 2,
    WIRE_SGROUP = 3,
    WIRE_EGROUP = 4,
    WIRE_FIXED32 = 5,
};

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false; /* truncated, or longer than 10 bytes */
}

/* A field's place in the message, one frame per nesting level on the stack: the text of a path
 * is rendered only for a refusal, never for every field that passes (it is on every call's path).
 */
struct frame {
    const struct frame *up; /* NULL at the top-level message */
    const char *name;
    long idx; /* index among the repeated field's occurrences, or -1 */
};

static void render(const struct frame *fr, char *dst, size_t dstlen)
{
    size_t n;

    if (fr == NULL) {
        dst[0] = '\0';
        return;
    }
    render(fr->up, dst, dstlen);
    n = strlen(dst);
    if (fr->idx >= 0)
        snprintf(dst + n, dstlen - n, "%s%s[%ld]", n ? "." : "", fr->name, fr->idx);
    else
        snprintf(dst + n, dstlen - n, "%s%s", n ? "." : "", fr->name);
}

static int fail(struct gw_fault *fault, const struct frame *fr, enum gw_rule rule)
{
    char path[PATH_MAX_LEN];

    render(fr, path, sizeof(path));
    return gw_fault_set(fault, GW_EINVAL, NULL, path[0] ? path : ROOT, rule);
}

/* What protobuf-c 1.4's unpack allocates, estimated from above while walking (wirecheck.h):
 * per message its struct; per field occurrence past the first 16 of a message two slots of
 * 32 bytes in the "scanned member" slabs (they double in size, so they never hold more than
 * twice the occurrences); per repeated field one array of its elements (a packed scalar field:
 * one element per varint or fixed-width value); per string its bytes and a NUL; per bytes field
 * its bytes; per unknown field a 24-byte record and its bytes. Every allocation is rounded up
 * to the arena's 16 bytes. */
#define ALLOC_ROUND(n) ((((size_t)(n)) + 15u) & ~(size_t)15u)
#define SCANNED_ON_STACK 16u
#define SCANNED_COST 64u
#define UNKNOWN_FIELD_COST 24u
#define WALK_OVER 1 /* walk's return: the measure passed its max; the walk stopped there */

static size_t elt_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default: /* 32-bit integers, floats, enums, protobuf_c_boolean */
        return 4;
    }
}

/* Elements of a packed repeated scalar field of n bytes at p. */
static size_t packed_count(const ProtobufCFieldDescriptor *f, const uint8_t *p, size_t n)
{
    size_t k = 0;

    switch (f->type) {
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return n / 8 + 1;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return n / 4 + 1;
    default:
        for (size_t i = 0; i < n; i++)
            k += (p[i] & 0x80) == 0;
        return k + 1;
    }
}

static bool is_packable(const ProtobufCFieldDescriptor *f)
{
    return f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_BYTES &&
           f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static int walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                const struct frame *path, int depth, size_t max, struct gw_fault *fault,
                struct gw_wire_measure *m)
{
    const uint8_t *end = p + len;
    unsigned seen[COUNTED_FIELDS]; /* occurrences of each repeated field so far */
    size_t occurrences = 0;

    /* only the descriptor's fields are indexed: an empty submessage costs no 512-byte clear */
    memset(seen, 0,
           sizeof(seen[0]) * (d->n_fields < COUNTED_FIELDS ? d->n_fields : COUNTED_FIELDS));

    if (depth > GW_WIRECHECK_MAX_DEPTH) {
        int rc = fail(fault, path, GW_RULE_NESTING);
        if (fault != NULL)
            fault->limit = GW_WIRECHECK_MAX_DEPTH;
        return rc;
    }
    m->unpacked += ALLOC_ROUND(d->sizeof_message);
    while (p < end) {
        const ProtobufCFieldDescriptor *f;
        const uint8_t *start = p;
        uint64_t key, n;
        struct frame sub = {path, NULL, -1};
        bool text, repeated;
        size_t fi = 0;
        int rc;

        if (!read_varint(&p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
            return fail(fault, path, GW_RULE_PROTOBUF);
        /* what is counted so far, this message's scanned slots included, never exceeds the
         * final measure: past max the message is refused whatever follows */
        if (m->unpacked + (occurrences > SCANNED_ON_STACK ? SCANNED_COST * occurrences : 0) > max) {
            m->unpacked += occurrences > SCANNED_ON_STACK ? SCANNED_COST * occurrences : 0;
            return WALK_OVER;
        }
        f = protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
        occurrences++;
        m->fields++;
        text =
            f != NULL && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE);
        repeated = f != NULL && f->label == PROTOBUF_C_LABEL_REPEATED;
        if (repeated) {
            fi = (size_t)(f - d->fields);
            if (fi < COUNTED_FIELDS) {
                if (seen[fi] == 0)
                    m->unpacked += 16; /* the array's rounding */
                if (text)
                    sub.idx = (long)seen[fi];
                seen[fi]++;
            } else {
                m->unpacked += 16;
            }
            if ((key & 7) != WIRE_LEN || !is_packable(f))
                m->unpacked += elt_size(f);
        }
        if (text)
            sub.name = f->name;
        switch (key & 7) {
        case WIRE_LEN:
            break;
        case WIRE_VARINT:
        case WIRE_FIXED64:
        case WIRE_FIXED32:
            if (text)
                return fail(fault, &sub, GW_RULE_WIRE_TYPE);
            if ((key & 7) == WIRE_VARINT) {
                if (!read_varint(&p, end, &n))
                    return fail(fault, path, GW_RULE_PROTOBUF);
            } else {
                size_t w = (key & 7) == WIRE_FIXED64 ? 8 : 4;
                if ((size_t)(end - p) < w)
                    return fail(fault, path, GW_RULE_PROTOBUF);
                p += w;
            }
            if (f == NULL)
                m->unpacked += UNKNOWN_FIELD_COST + ALLOC_ROUND(p - start);
            continue;
        default: /* groups (unsupported by protobuf-c) and undefined wire types 6 and 7 */
            return fail(fault, path, GW_RULE_PROTOBUF);
        }
        if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
            return fail(fault, path, GW_RULE_PROTOBUF);
        if (f == NULL)
            m->unpacked += UNKNOWN_FIELD_COST + ALLOC_ROUND((size_t)(p - start) + n);
        else if (f->type == PROTOBUF_C_TYPE_BYTES)
            m->unpacked += ALLOC_ROUND(n);
        else if (repeated && is_packable(f))
            m->unpacked += packed_count(f, p, (size_t)n) * elt_size(f);
        if (!text) {
            p += n;
            continue;
        }
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            m->unpacked += ALLOC_ROUND(n + 1);
            if (!gw_utf8_valid((const char *)p, (size_t)n))
                return fail(fault, &sub, GW_RULE_UTF8);
            if (memchr(p, 0, (size_t)n) != NULL)
                return fail(fault, &sub, GW_RULE_NUL);
        } else {
            rc = walk(f->descriptor, p, (size_t)n, &sub, depth + 1, max, fault, m);
            if (rc != 0)
                return rc;
        }
        p += n;
    }
    if (occurrences > SCANNED_ON_STACK)
        m->unpacked += SCANNED_COST * occurrences;
    return 0;
}

int gw_wire_measure(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                    struct gw_wire_measure *m, struct gw_fault *fault)
{
    return gw_wire_measure_max(desc, buf, len, SIZE_MAX, m, fault);
}

int gw_wire_measure_max(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                        size_t max, struct gw_wire_measure *m, struct gw_fault *fault)
{
    struct gw_wire_measure local;
    int rc;

    if (m == NULL)
        m = &local;
    memset(m, 0, sizeof(*m));
    gw_fault_clear(fault);
    m->unpacked = ALLOC_ROUND(desc->sizeof_message);
    if (len == 0)
        return 0;
    if (buf == NULL)
        return fail(fault, NULL, GW_RULE_PROTOBUF);
    m->unpacked = 0;
    rc = walk(desc, buf, len, NULL, 0, max, fault, m);
    return rc == WALK_OVER ? 0 : rc;
}

int gw_wire_count(const uint8_t *buf, size_t len, uint32_t field, size_t *count)
{
    return gw_wire_count_max(buf, len, field, SIZE_MAX - 1, count);
}

int gw_wire_count_max(const uint8_t *buf, size_t len, uint32_t field, size_t max, size_t *count)
{
    const uint8_t *p, *end;

    *count = 0;
    if (len == 0) /* an empty message (buf may be NULL): nothing to count */
        return 0;
    p = buf;
    end = buf + len;
    while (p < end) {
        uint64_t key, n;

        if (!read_varint(&p, end, &key) || key >> 3 == 0)
            return GW_EINVAL;
        switch (key & 7) {
        case WIRE_VARINT:
            if (!read_varint(&p, end, &n))
                return GW_EINVAL;
            break;
        case WIRE_FIXED64:
        case WIRE_FIXED32:
            n = (key & 7) == WIRE_FIXED64 ? 8 : 4;
            if ((uint64_t)(end - p) < n)
                return GW_EINVAL;
            p += n;
            break;
        case WIRE_LEN:
            if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
                return GW_EINVAL;
            p += n;
            break;
        default:
            return GW_EINVAL;
        }
        if (key >> 3 == field && ++(*count) > max)
            return 0;
    }
    return 0;
}

int gw_wirecheck(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                 struct gw_fault *fault)
{
    return gw_wire_measure(desc, buf, len, NULL, fault);
}
