/* grpc.c: pure gRPC framing: the length-prefixed message decoder, request header checks,
 * grpc-timeout parsing and grpc-message encoding. Invariants: the decoder never buffers more than
 * max_message bytes and refuses an oversized message from its prefix alone; header fields are
 * kept in fixed buffers, and their total is capped. No I/O, no logging. */
#include "grpc.h"

#include <string.h>

#include "alloc.h"

void gw_grpc_decoder_init(struct gw_grpc_decoder *d, uint32_t max_message)
{
    memset(d, 0, sizeof(*d));
    d->max_message = max_message;
}

void gw_grpc_decoder_clear(struct gw_grpc_decoder *d)
{
    gw_free_wipe(d->buf, d->bufcap);
    d->buf = NULL;
    d->bufcap = 0;
    d->need = d->have = 0;
    d->prefix_have = 0;
}

uint8_t *gw_grpc_decoder_take(struct gw_grpc_decoder *d)
{
    uint8_t *b = d->buf;

    d->buf = NULL;
    d->bufcap = 0;
    return b;
}

bool gw_grpc_decoder_idle(const struct gw_grpc_decoder *d)
{
    return d->prefix_have == 0;
}

static int decoder_fail(struct gw_grpc_decoder *d, int err)
{
    gw_grpc_decoder_clear(d);
    d->error = err;
    return err;
}

/* Makes room for at least want bytes (want <= need): doubles, starting at 16 KiB, capped at
 * need. The old buffer is wiped before it is released. */
static int grow(struct gw_grpc_decoder *d, size_t want)
{
    size_t cap = d->bufcap ? (size_t)d->bufcap * 2 : 16384;
    uint8_t *nb;

    if (cap < want)
        cap = want;
    if (cap > d->need)
        cap = d->need;
    nb = gw_malloc(cap);
    if (nb == NULL)
        return GW_ENOMEM;
    if (d->have > 0)
        memcpy(nb, d->buf, d->have);
    gw_free_wipe(d->buf, d->bufcap);
    d->buf = nb;
    d->bufcap = (uint32_t)cap;
    return 0;
}

int gw_grpc_decoder_feed(struct gw_grpc_decoder *d, const uint8_t *data, size_t len,
                         gw_grpc_msg_cb cb, void *arg)
{
    size_t off = 0;
    int rc;

    if (d->error)
        return d->error;
    while (off < len) {
        if (d->prefix_have < GW_GRPC_PREFIX_LEN) {
            size_t take = GW_GRPC_PREFIX_LEN - d->prefix_have;
            if (take > len - off)
                take = len - off;
            memcpy(d->prefix + d->prefix_have, data + off, take);
            d->prefix_have += take;
            off += take;
            if (d->prefix_have < GW_GRPC_PREFIX_LEN)
                break;
            if (d->prefix[0] == 1) {
                d->compressed = true;
                return decoder_fail(d, GW_EUNIMPL);
            }
            if (d->prefix[0] != 0)
                return decoder_fail(d, GW_EPROTO);
            d->need = (uint32_t)d->prefix[1] << 24 | (uint32_t)d->prefix[2] << 16 |
                      (uint32_t)d->prefix[3] << 8 | (uint32_t)d->prefix[4];
            d->have = 0;
            if (d->need > d->max_message)
                return decoder_fail(d, GW_ETOOBIG);
            /* Whole body already here and nothing buffered: hand it over without copying. */
            if (len - off >= d->need) {
                rc = cb(arg, d->need ? data + off : NULL, d->need);
                off += d->need;
                d->prefix_have = 0;
                d->need = 0;
                if (rc < 0)
                    return decoder_fail(d, rc);
                continue;
            }
        }
        if (d->have < d->need) {
            size_t take = d->need - d->have;
            if (take > len - off)
                take = len - off;
            if (take == 0)
                break; /* the prefix ended this chunk */
            if (d->have + take > d->bufcap && grow(d, d->have + take) != 0)
                return decoder_fail(d, GW_ENOMEM);
            memcpy(d->buf + d->have, data + off, take);
            d->have += (uint32_t)take;
            off += take;
        }
        if (d->have < d->need)
            break;
        rc = cb(arg, d->buf, d->need);
        gw_grpc_decoder_clear(d);
        if (rc < 0)
            return decoder_fail(d, rc);
    }
    return 0;
}

void gw_grpc_frame_prefix(uint8_t out[GW_GRPC_PREFIX_LEN], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

int gw_grpc_timeout_parse(const char *s, uint64_t *ms)
{
    uint64_t v = 0;
    size_t n = 0;

    while (s[n] >= '0' && s[n] <= '9') {
        if (n == 8)
            return GW_EINVAL;
        v = v * 10 + (uint64_t)(s[n] - '0');
        n++;
    }
    if (n == 0 || s[n] == '\0' || s[n + 1] != '\0')
        return GW_EINVAL;
    switch (s[n]) {
    case 'H':
        *ms = v * 3600000u;
        break;
    case 'M':
        *ms = v * 60000u;
        break;
    case 'S':
        *ms = v * 1000u;
        break;
    case 'm':
        *ms = v;
        break;
    case 'u':
        *ms = (v + 999u) / 1000u;
        break;
    case 'n':
        *ms = (v + 999999u) / 1000000u;
        break;
    default:
        return GW_EINVAL;
    }
    return 0;
}

size_t gw_grpc_percent_encode(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    if (outlen == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            if (o + 1 >= outlen)
                break;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= outlen)
                break;
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return o;
}

void gw_grpc_headers_init(struct gw_grpc_headers *h, uint32_t max_bytes)
{
    memset(h, 0, sizeof(*h));
    h->max_bytes = max_bytes;
}

static void keep(struct gw_grpc_headers *h, bool *has, char *dst, size_t dstlen,
                 const uint8_t *value, size_t valuelen)
{
    if (*has || valuelen >= dstlen) {
        h->bad_value = true;
        return;
    }
    memcpy(dst, value, valuelen);
    dst[valuelen] = '\0';
    if (memchr(dst, '\0', valuelen) != NULL)
        h->bad_value = true;
    *has = true;
}

static bool name_is(const uint8_t *name, size_t namelen, const char *want)
{
    return namelen == strlen(want) && memcmp(name, want, namelen) == 0;
}

void gw_grpc_headers_add(struct gw_grpc_headers *h, const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen)
{
    uint64_t sz = (uint64_t)namelen + valuelen + 32u;

    if (h->too_big || h->bytes + sz > h->max_bytes) {
        h->too_big = true;
        return;
    }
    h->bytes += (uint32_t)sz;
    if (name_is(name, namelen, ":method"))
        keep(h, &h->has_method, h->method, sizeof(h->method), value, valuelen);
    else if (name_is(name, namelen, ":path"))
        keep(h, &h->has_path, h->path, sizeof(h->path), value, valuelen);
    else if (name_is(name, namelen, "content-type"))
        keep(h, &h->has_ctype, h->content_type, sizeof(h->content_type), value, valuelen);
    else if (name_is(name, namelen, "te"))
        keep(h, &h->has_te, h->te, sizeof(h->te), value, valuelen);
    else if (name_is(name, namelen, "grpc-timeout"))
        keep(h, &h->has_timeout, h->timeout, sizeof(h->timeout), value, valuelen);
    else if (name_is(name, namelen, "grpc-encoding"))
        keep(h, &h->has_encoding, h->encoding, sizeof(h->encoding), value, valuelen);
    else if (name_is(name, namelen, "x-request-id")) {
        /* A client's id that does not qualify is replaced, not refused. */
        if (!h->has_request_id && valuelen < sizeof(h->request_id)) {
            memcpy(h->request_id, value, valuelen);
            h->request_id[valuelen] = '\0';
            h->has_request_id = gw_grpc_request_id_valid(h->request_id);
        }
    } else if (name_is(name, namelen, "authorization"))
        keep(h, &h->has_authorization, h->authorization, sizeof(h->authorization), value, valuelen);
}

static bool content_type_ok(const char *ct)
{
    static const char base[] = "application/grpc";
    size_t n = sizeof(base) - 1;

    if (strncmp(ct, base, n) != 0)
        return false;
    return ct[n] == '\0' || strcmp(ct + n, "+proto") == 0 || ct[n] == ';' ||
           strncmp(ct + n, "+proto;", 7) == 0;
}

void gw_grpc_headers_check(const struct gw_grpc_headers *h, uint32_t max_deadline_ms,
                           struct gw_grpc_verdict *v, uint64_t *timeout_ms)
{
    uint64_t t = max_deadline_ms;

    v->http_status = 200;
    v->status = GW_GRPC_OK;
    v->message = NULL;
    *timeout_ms = max_deadline_ms;
    if (h->too_big) {
        v->status = GW_GRPC_RESOURCE_EXHAUSTED;
        v->message = "request headers exceed the maximum header list size";
        return;
    }
    if (!h->has_method || strcmp(h->method, "POST") != 0) {
        v->http_status = 405;
        v->status = GW_GRPC_UNIMPLEMENTED;
        v->message = ":method must be POST";
        return;
    }
    if (!h->has_ctype || !content_type_ok(h->content_type)) {
        v->http_status = 415;
        v->status = GW_GRPC_INTERNAL;
        v->message = "content-type must be application/grpc";
        return;
    }
    if (h->bad_value) {
        v->status = GW_GRPC_INVALID_ARGUMENT;
        v->message = "request headers: a field is too long or repeated";
        return;
    }
    if (!h->has_path || h->path[0] != '/') {
        v->status = GW_GRPC_UNIMPLEMENTED;
        v->message = "unknown method";
        return;
    }
    if (h->has_te && strcmp(h->te, "trailers") != 0) {
        v->status = GW_GRPC_INVALID_ARGUMENT;
        v->message = "te: must be trailers";
        return;
    }
    if (h->has_encoding && strcmp(h->encoding, "identity") != 0) {
        v->status = GW_GRPC_UNIMPLEMENTED;
        v->message = "grpc-encoding: only identity is supported";
        return;
    }
    if (h->has_timeout) {
        if (gw_grpc_timeout_parse(h->timeout, &t) != 0) {
            v->status = GW_GRPC_INVALID_ARGUMENT;
            v->message = "grpc-timeout: malformed";
            return;
        }
        if (t > max_deadline_ms)
            t = max_deadline_ms;
    }
    *timeout_ms = t;
}

bool gw_grpc_request_id_valid(const char *id)
{
    size_t n = 0;

    for (; id[n]; n++) {
        char c = id[n];
        if (n == 64)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}
