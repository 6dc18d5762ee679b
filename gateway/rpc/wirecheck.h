/* wirecheck.h: checks the string fields of a protobuf message on its wire bytes, which protobuf-c
 * 1.4 does not: every field declared `string` in the descriptor, at any depth (submessages,
 * repeated fields, map entries), must be valid UTF-8 (utf8.h: no overlongs, surrogates or code
 * points above U+10FFFF) and must not contain a NUL byte (protobuf-c hands strings over
 * NUL-terminated, so a NUL would silently cut the value short).
 *
 * The walk does not trust the framing: a truncated varint or fixed-width value, a length past the
 * end, a group (protobuf-c does not support them), an undefined wire type or field number 0 make
 * the message invalid, and so does a string or message field sent with a wire type other than
 * length-delimited. Unknown fields are skipped without being looked into.
 *
 * The same walk measures what unpacking would allocate (gw_wire_measure), and a top-level field
 * can be counted on its own (gw_wire_count), both before anything is unpacked.
 *
 * Contract: pure (no allocation, no logging, no libevent; protobuf-c descriptors only); reads only
 * buf[0..len). */
#ifndef GW_WIRECHECK_H
#define GW_WIRECHECK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "err.h"

/* Messages nested deeper than this are refused (GW_RULE_NESTING, limit GW_WIRECHECK_MAX_DEPTH). */
#define GW_WIRECHECK_MAX_DEPTH 32

/* Checks buf[0..len), a serialised message of type desc. Returns 0, or GW_EINVAL with *fault
 * (may be NULL) naming the field path and the rule:
 *  - a bad string: the field's path, e.g. "waybills[3].recipient.name", rule GW_RULE_UTF8 or
 *    GW_RULE_NUL (a repeated field's path carries its 0-based occurrence index);
 *  - a string or message field with another wire type: its path, GW_RULE_WIRE_TYPE;
 *  - broken framing: the enclosing message's path ("request" at the top), GW_RULE_PROTOBUF;
 *  - nesting deeper than GW_WIRECHECK_MAX_DEPTH: the path reached, GW_RULE_NESTING.
 * The first problem in wire order wins. */
GW_MUST_CHECK int gw_wirecheck(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                               size_t len, struct gw_fault *fault);

/* What unpacking a message would cost, measured on its wire bytes without unpacking it (issue 10,
 * finding 2: 2 bytes of an empty repeated submessage unpack into a whole struct). */
struct gw_wire_measure {
    size_t unpacked; /* bytes protobuf-c 1.4's unpack allocates, estimated from above (each
                      * allocation rounded up to 16, as the call's arena does) */
    size_t fields;   /* field occurrences, at every depth */
};

/* The same walk and checks as gw_wirecheck, which also fills *m (may be NULL). On a fault, *m
 * covers only the part walked. */
GW_MUST_CHECK int gw_wire_measure(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                  size_t len, struct gw_wire_measure *m, struct gw_fault *fault);

/* gw_wire_measure that stops early once what it has counted so far (a lower bound of the whole)
 * exceeds max: it then returns 0 with m->unpacked > max, the rest unwalked and unchecked. A
 * message of millions of empty fields is refused after the part that already proves it too
 * large, not after all of it (the loop is not held: issue 10, finding 2). */
GW_MUST_CHECK int gw_wire_measure_max(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                      size_t len, size_t max, struct gw_wire_measure *m,
                                      struct gw_fault *fault);

/* Counts the occurrences of top-level field number `field` in buf[0..len) without unpacking
 * (a repeated field's elements: a batch's items before the batch is unpacked). Returns 0, or
 * GW_EINVAL when the framing is broken (*count is then what was counted so far). */
GW_MUST_CHECK int gw_wire_count(const uint8_t *buf, size_t len, uint32_t field, size_t *count);

/* gw_wire_count that stops once *count exceeds max (then *count == max + 1, the rest of the
 * message unread): a batch of millions of items is refused after max + 1 of them. */
GW_MUST_CHECK int gw_wire_count_max(const uint8_t *buf, size_t len, uint32_t field, size_t max,
                                    size_t *count);

#endif
