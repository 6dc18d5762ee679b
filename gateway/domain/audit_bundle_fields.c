/* audit_bundle_fields.c: the field encoding of bundle items (audit_bundle_int.h), the same as
 * the record encoding of audit_rec.h. Decoding never reads past its buffer. */
#include "audit_bundle_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void put(struct gw_bfenc *e, const void *p, size_t n)
{
    if (n && e->len + n <= e->cap)
        memcpy(e->buf + e->len, p, n);
    e->len += n;
}

void gw_bf_head(struct gw_bfenc *e, size_t n)
{
    uint8_t h[5] = {1, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    put(e, h, sizeof h);
}

void gw_bf_bytes(struct gw_bfenc *e, const void *p, size_t n)
{
    gw_bf_head(e, n);
    put(e, p, n);
}

void gw_bf_text(struct gw_bfenc *e, const char *s)
{
    if (!s)
        gw_bf_absent(e);
    else
        gw_bf_bytes(e, s, strlen(s));
}

void gw_bf_int(struct gw_bfenc *e, int64_t v)
{
    char d[24];
    int n = snprintf(d, sizeof d, "%" PRId64, v);
    gw_bf_bytes(e, d, (size_t)n);
}

void gw_bf_absent(struct gw_bfenc *e)
{
    uint8_t z = 0;
    put(e, &z, 1);
}

int gw_bf_next(struct gw_bfdec *d, const uint8_t **f, size_t *len)
{
    size_t n;
    if (d->off >= d->n)
        return -1;
    if (d->p[d->off] == 0) {
        d->off++;
        return 0;
    }
    if (d->p[d->off] != 1 || d->n - d->off < 5)
        return -1;
    n = ((size_t)d->p[d->off + 1] << 24) | ((size_t)d->p[d->off + 2] << 16) |
        ((size_t)d->p[d->off + 3] << 8) | d->p[d->off + 4];
    if (n > d->n - d->off - 5)
        return -1;
    *f = d->p + d->off + 5;
    *len = n;
    d->off += 5 + n;
    return 1;
}

bool gw_bf_decimal(const uint8_t *f, size_t len, int64_t *v)
{
    size_t i = 0;
    bool neg = false;
    uint64_t acc = 0;
    if (len > 0 && f[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i >= len || len - i > 19 || (f[i] == '0' && len - i > 1) || (neg && f[i] == '0'))
        return false;
    for (; i < len; i++) {
        if (f[i] < '0' || f[i] > '9')
            return false;
        acc = acc * 10 + (uint64_t)(f[i] - '0');
    }
    if (acc > (uint64_t)INT64_MAX)
        return false;
    *v = neg ? -(int64_t)acc : (int64_t)acc;
    return true;
}
