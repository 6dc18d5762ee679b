/* fuzz_grpc.c: the pure gRPC layer (transport/grpc.c). The first byte chooses the part:
 *  - even: the length-prefixed message decoder. The rest of the input is one request body, fed
 *    once whole and once in chunks whose sizes come from the second byte; both feeds must yield
 *    the same messages and the same verdict, no message over the cap, and never more bytes out
 *    than in;
 *  - odd: request headers. The rest is a list of fields (one byte name length, one byte value
 *    length, name, value) added to a header list, then checked; each value also goes through the
 *    grpc-timeout parser and the grpc-message encoder, whose output must stay in its buffer and
 *    be printable ASCII. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 64

struct seen {
    uint32_t max;
    size_t n, bytes;
    size_t len[MAX_MSGS];
    uint8_t first[MAX_MSGS];
};

static int on_msg(void *arg, const uint8_t *msg, size_t len)
{
    struct seen *s = arg;

    if (len > s->max || (len > 0 && msg == NULL))
        __builtin_trap();
    if (s->n < MAX_MSGS) {
        s->len[s->n] = len;
        s->first[s->n] = len > 0 ? msg[0] : 0;
    }
    s->n++;
    s->bytes += len;
    return 0;
}

static int decode(const uint8_t *p, size_t n, uint32_t max, uint8_t chunk_seed, struct seen *s,
                  bool *idle)
{
    struct gw_grpc_decoder d;
    uint32_t x = chunk_seed * 2654435761u + 1u;
    size_t off = 0;
    int rc = 0;

    memset(s, 0, sizeof(*s));
    s->max = max;
    gw_grpc_decoder_init(&d, max);
    while (off < n && rc == 0) {
        size_t take = n - off;
        if (chunk_seed != 0) {
            x = x * 1103515245u + 12345u;
            take = 1 + (x >> 16) % 7;
            if (take > n - off)
                take = n - off;
        }
        rc = gw_grpc_decoder_feed(&d, p + off, take, on_msg, s);
        off += take;
    }
    *idle = gw_grpc_decoder_idle(&d);
    gw_grpc_decoder_clear(&d);
    return rc;
}

static void fuzz_decoder(const uint8_t *p, size_t n, uint8_t sel)
{
    static const uint32_t caps[] = {0, 1, 5, 64, 1024, 1u << 20};
    uint32_t max = caps[(sel >> 1) % (sizeof(caps) / sizeof(caps[0]))];
    struct seen whole, parts;
    bool idle_w, idle_p;
    int rc_w, rc_p;

    if (n == 0)
        return;
    rc_w = decode(p + 1, n - 1, max, 0, &whole, &idle_w);
    rc_p = decode(p + 1, n - 1, max, p[0] | 1, &parts, &idle_p);
    if (rc_w != rc_p || whole.n != parts.n || whole.bytes != parts.bytes)
        __builtin_trap();
    if (rc_w == 0 && idle_w != idle_p)
        __builtin_trap();
    if (whole.bytes + whole.n * GW_GRPC_PREFIX_LEN > n - 1)
        __builtin_trap();
    for (size_t i = 0; i < whole.n && i < MAX_MSGS; i++)
        if (whole.len[i] != parts.len[i] || whole.first[i] != parts.first[i])
            __builtin_trap();
}

static void fuzz_headers(const uint8_t *p, size_t n, uint8_t sel)
{
    struct gw_grpc_headers h;
    struct gw_grpc_verdict v;
    uint64_t timeout = 0, ms;
    char value[256], enc[64];
    size_t k;

    gw_grpc_headers_init(&h, sel & 2 ? 256 : 8192);
    while (n >= 2) {
        size_t nl = p[0], vl = p[1];
        if (nl + vl > n - 2)
            break;
        gw_grpc_headers_add(&h, p + 2, nl, p + 2 + nl, vl);
        memcpy(value, p + 2 + nl, vl < sizeof(value) - 1 ? vl : sizeof(value) - 1);
        value[vl < sizeof(value) - 1 ? vl : sizeof(value) - 1] = '\0';
        (void)gw_grpc_timeout_parse(value, &ms);
        k = gw_grpc_percent_encode(value, enc, sizeof(enc));
        if (k >= sizeof(enc) || enc[k] != '\0' || strlen(enc) != k)
            __builtin_trap();
        for (size_t i = 0; i < k; i++)
            if (enc[i] < 0x20 || enc[i] > 0x7e)
                __builtin_trap();
        (void)gw_grpc_request_id_valid(value);
        p += 2 + nl + vl;
        n -= 2 + nl + vl;
    }
    gw_grpc_headers_check(&h, 60000, &v, &timeout);
    if (v.status == GW_GRPC_OK && (v.http_status != 200 || timeout > 60000))
        __builtin_trap();
    if (v.status != GW_GRPC_OK && v.message == NULL)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_headers(data + 1, size - 1, data[0]);
    else
        fuzz_decoder(data + 1, size - 1, data[0]);
    return 0;
}
