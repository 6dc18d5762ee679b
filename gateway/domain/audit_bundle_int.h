/* audit_bundle_int.h: private to the bundle writer and verifier (audit_bundle*.c): the magic
 * strings and the field encoding they share with the record encoding of audit_rec.h (a present
 * field is 0x01, a 4-byte big-endian length and the bytes; an absent one the byte 0x00). */
#ifndef GW_AUDIT_BUNDLE_INT_H
#define GW_AUDIT_BUNDLE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_BUNDLE_MAGIC "waygate.bundle.v1"           /* followed by its NUL in the file */
#define GW_BUNDLE_SEAL_MAGIC "waygate.bundle.seal.v1" /* followed by its NUL in the message */
#define GW_BUNDLE_REC_MAGIC "waygate.audit.v1"
#define GW_BUNDLE_CHAIN_MAX 64

/* An encoder into buf[0..cap) that counts past cap (then len > cap: nothing beyond cap written). */
struct gw_bfenc {
    uint8_t *buf;
    size_t cap, len;
};
void gw_bf_head(struct gw_bfenc *e, size_t n); /* 0x01 and the length */
void gw_bf_bytes(struct gw_bfenc *e, const void *p, size_t n);
void gw_bf_text(struct gw_bfenc *e, const char *s); /* NULL: absent */
void gw_bf_int(struct gw_bfenc *e, int64_t v);      /* decimal ASCII */
void gw_bf_absent(struct gw_bfenc *e);

/* A decoder over p[0..n). */
struct gw_bfdec {
    const uint8_t *p;
    size_t n, off;
};
/* The next field: returns 1 (present: *f, *len), 0 (absent) or -1 (malformed or at the end). */
int gw_bf_next(struct gw_bfdec *d, const uint8_t **f, size_t *len);
/* A canonical decimal (no leading zero, optional '-'); returns true and *v when it is one. */
bool gw_bf_decimal(const uint8_t *f, size_t len, int64_t *v);

#endif
