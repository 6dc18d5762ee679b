/* wirecheck.c: the walk over protobuf wire bytes that checks every string field (wirecheck.h).
 * Invariants: never reads outside buf[0..len); recursion is bounded by GW_WIRECHECK_MAX_DEPTH;
 * a fault names a field path and a rule, never bytes of the message. */
#include "wirecheck.h"

#include <stdbool.h>
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

static int walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                const struct frame *path, int depth, struct gw_fault *fault)
{
    const uint8_t *end = p + len;
    unsigned seen[COUNTED_FIELDS] = {0}; /* occurrences of each repeated field so far */

    if (depth > GW_WIRECHECK_MAX_DEPTH) {
        int rc = fail(fault, path, GW_RULE_NESTING);
        if (fault != NULL)
            fault->limit = GW_WIRECHECK_MAX_DEPTH;
        return rc;
    }
    while (p < end) {
        const ProtobufCFieldDescriptor *f;
        uint64_t key, n;
        struct frame sub = {path, NULL, -1};
        bool text;
        int rc;

        if (!read_varint(&p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
            return fail(fault, path, GW_RULE_PROTOBUF);
        f = protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
        text =
            f != NULL && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE);
        if (text && f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t fi = (size_t)(f - d->fields);
            if (fi < COUNTED_FIELDS)
                sub.idx = (long)seen[fi]++;
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
            continue;
        default: /* groups (unsupported by protobuf-c) and undefined wire types 6 and 7 */
            return fail(fault, path, GW_RULE_PROTOBUF);
        }
        if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
            return fail(fault, path, GW_RULE_PROTOBUF);
        if (!text) {
            p += n;
            continue;
        }
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            if (!gw_utf8_valid((const char *)p, (size_t)n))
                return fail(fault, &sub, GW_RULE_UTF8);
            if (memchr(p, 0, (size_t)n) != NULL)
                return fail(fault, &sub, GW_RULE_NUL);
        } else {
            rc = walk(f->descriptor, p, (size_t)n, &sub, depth + 1, fault);
            if (rc != 0)
                return rc;
        }
        p += n;
    }
    return 0;
}

int gw_wirecheck(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                 struct gw_fault *fault)
{
    gw_fault_clear(fault);
    if (len == 0)
        return 0;
    if (buf == NULL)
        return fail(fault, NULL, GW_RULE_PROTOBUF);
    return walk(desc, buf, len, NULL, 0, fault);
}
