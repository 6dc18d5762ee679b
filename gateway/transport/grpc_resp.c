/* grpc_resp.c: a gRPC response's header fields and the call status they decide (client side).
 * Pure. Invariant: nothing of the response but grpc-message reaches the status message, and that
 * one only percent-decoded, bounded and without control characters. */
#include "grpc_resp.h"

#include <stdio.h>
#include <string.h>

void gw_grpc_resp_init(struct gw_grpc_resp *r)
{
    memset(r, 0, sizeof(*r));
    r->http_status = -1;
    r->grpc_status = -1;
}

static bool name_is(const uint8_t *name, size_t namelen, const char *want)
{
    return namelen == strlen(want) && memcmp(name, want, namelen) == 0;
}

/* 1..3 decimal digits (a status) or -1. */
static int parse_status(const uint8_t *v, size_t len, int max)
{
    int n = 0;

    if (len == 0 || len > 3)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n <= max ? n : -1;
}

static int hexval(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static void decode_message(const uint8_t *v, size_t len, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < len && o + 1 < outlen; i++) {
        int ch = v[i];
        if (ch == '%' && i + 2 < len && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
            ch = hexval(v[i + 1]) * 16 + hexval(v[i + 2]);
            i += 2;
        }
        out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[o] = '\0';
}

void gw_grpc_resp_header(struct gw_grpc_resp *r, const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen)
{
    if (name_is(name, namelen, ":status")) {
        r->http_status = parse_status(value, valuelen, 999);
    } else if (name_is(name, namelen, "grpc-status")) {
        r->grpc_status = parse_status(value, valuelen, 16);
        r->has_grpc_status = true;
    } else if (name_is(name, namelen, "grpc-message")) {
        decode_message(value, valuelen, r->grpc_message, sizeof(r->grpc_message));
    }
}

static enum gw_grpc_status http_to_grpc(int http)
{
    switch (http) {
    case 400:
        return GW_GRPC_INTERNAL;
    case 401:
        return GW_GRPC_UNAUTHENTICATED;
    case 403:
        return GW_GRPC_PERMISSION_DENIED;
    case 404:
        return GW_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GW_GRPC_UNAVAILABLE;
    default:
        return GW_GRPC_UNKNOWN;
    }
}

enum gw_grpc_status gw_grpc_resp_verdict(const struct gw_grpc_resp *r, unsigned messages,
                                         bool partial, char *msg, size_t msglen)
{
    if (r->http_status != 200) {
        snprintf(msg, msglen, "backend: HTTP status %d", r->http_status);
        return http_to_grpc(r->http_status);
    }
    if (!r->has_grpc_status || r->grpc_status < 0) {
        snprintf(msg, msglen, "backend: response without a valid grpc-status");
        return GW_GRPC_INTERNAL;
    }
    if (r->grpc_status != GW_GRPC_OK) {
        snprintf(msg, msglen, "%s",
                 r->grpc_message[0] != '\0' ? r->grpc_message : "backend: call failed");
        return (enum gw_grpc_status)r->grpc_status;
    }
    if (messages != 1 || partial) {
        snprintf(msg, msglen, "backend: OK without exactly one whole response message");
        return GW_GRPC_INTERNAL;
    }
    if (msglen > 0)
        msg[0] = '\0';
    return GW_GRPC_OK;
}
