/* grpc.h: the pure parts of gRPC over HTTP/2 (no libevent, no nghttp2, no logging):
 *  - the length-prefixed message decoder (5-byte prefix: 1 compressed flag, 4 length big-endian),
 *  - request header collection and checks, with the header-list size cap,
 *  - grpc-timeout parsing, grpc-message percent-encoding, response message framing.
 * Spec: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md */
#ifndef GW_GRPC_H
#define GW_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GW_GRPC_PREFIX_LEN 5

/* ---- message decoder ----
 * Feed arbitrary chunks of a request body; complete messages come out one at a time. A message
 * whose declared length exceeds max_message is refused as soon as its prefix is complete, before
 * any of its body is buffered. A compressed-flag message is refused likewise (only identity
 * encoding is supported). Buffered bytes never exceed max_message. */
struct gw_grpc_decoder {
    uint32_t max_message;
    uint8_t prefix[GW_GRPC_PREFIX_LEN];
    size_t prefix_have;
    uint8_t *buf;    /* body of the message being assembled (gw_malloc'd), or NULL; it
                      * grows with the bytes actually received, never ahead of them by more
                      * than 16 KiB or 2x, so a large declared length costs nothing up front */
    uint32_t bufcap; /* allocated size of buf */
    uint32_t need;   /* declared length of that message */
    uint32_t have;   /* bytes of it received */
    int error;       /* sticky: once set, the decoder yields nothing more */
    bool compressed; /* the error was a compressed-flag message */
};

void gw_grpc_decoder_init(struct gw_grpc_decoder *d, uint32_t max_message);
void gw_grpc_decoder_clear(struct gw_grpc_decoder *d);
/* From inside the message callback, when its msg is d->buf (a message assembled from several
 * chunks): hands the buffer over, msg's length exactly, to be freed by the caller with
 * gw_free_wipe; the decoder then holds nothing. */
uint8_t *gw_grpc_decoder_take(struct gw_grpc_decoder *d);

/* Called once per complete message; msg is valid only during the call (may be NULL when len is
 * 0). Return 0 to go on, or a negative gw_err to stop decoding (made sticky and returned by
 * gw_grpc_decoder_feed). */
typedef int (*gw_grpc_msg_cb)(void *arg, const uint8_t *msg, size_t len);

/* Consumes all of data[0..len). Returns 0, GW_ETOOBIG (declared length over the cap),
 * GW_EUNIMPL (compressed flag set), GW_EPROTO (flag byte neither 0 nor 1), GW_ENOMEM, or the
 * callback's error. Errors are sticky. */
int gw_grpc_decoder_feed(struct gw_grpc_decoder *d, const uint8_t *data, size_t len,
                         gw_grpc_msg_cb cb, void *arg) GW_MUST_CHECK;

/* True when no partial message is buffered (a request body may end only here). */
bool gw_grpc_decoder_idle(const struct gw_grpc_decoder *d);

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void gw_grpc_frame_prefix(uint8_t out[GW_GRPC_PREFIX_LEN], uint32_t len);

/* ---- grpc-timeout ----
 * "TimeoutValue TimeoutUnit": 1-8 ASCII digits, unit one of H M S m u n. Sub-millisecond values
 * round up. Returns 0 with *ms set, or GW_EINVAL when malformed. */
int gw_grpc_timeout_parse(const char *s, uint64_t *ms) GW_MUST_CHECK;

/* ---- grpc-message ----
 * Percent-encodes s as gRPC specifies (bytes outside 0x20..0x7E and '%' become %XX). Writes at
 * most outlen-1 bytes plus NUL, never splitting an escape; returns the length written. */
size_t gw_grpc_percent_encode(const char *s, char *out, size_t outlen);

/* ---- request headers ---- */
struct gw_grpc_headers {
    uint32_t max_bytes; /* header-list cap (HPACK sizes: name + value + 32 per field) */
    uint32_t bytes;     /* accumulated size */
    bool too_big;       /* the cap was passed; later fields were dropped */
    bool bad_value;     /* a field we keep was too long for its buffer, or duplicated */
    bool has_method, has_path, has_ctype, has_te, has_timeout, has_encoding, has_request_id,
        has_authorization;
    char method[16];
    char path[256];
    char content_type[64];
    char te[32];
    char timeout[16];
    char encoding[32];
    char request_id[72];
    char authorization[1024];
};

void gw_grpc_headers_init(struct gw_grpc_headers *h, uint32_t max_bytes);
/* Records one header field (name lower-case, as HTTP/2 requires). Never fails: problems are
 * recorded in too_big / bad_value and reported by gw_grpc_headers_check. */
void gw_grpc_headers_add(struct gw_grpc_headers *h, const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen);

/* Verdict of the request header checks: what to answer when the request cannot proceed. */
struct gw_grpc_verdict {
    int http_status;            /* 200, or 405/415 for requests that are not gRPC at all */
    enum gw_grpc_status status; /* GW_GRPC_OK when the request may proceed */
    const char *message;        /* constant, never caller data */
};

/* Checks :method POST, :path present, content-type application/grpc[+proto|;...], te (absent
 * tolerated, otherwise must be "trailers"), grpc-encoding (absent or identity), grpc-timeout
 * syntax, header-list size. On success *deadline_ms is the timeout to apply (grpc-timeout capped at
 * max_deadline_ms; max_deadline_ms when absent). */
void gw_grpc_headers_check(const struct gw_grpc_headers *h, uint32_t max_deadline_ms,
                           struct gw_grpc_verdict *v, uint64_t *timeout_ms);

/* True when id is 1-64 characters of [A-Za-z0-9._-] (acceptable as a client's x-request-id). */
bool gw_grpc_request_id_valid(const char *id);

#endif
