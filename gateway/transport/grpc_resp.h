/* grpc_resp.h: the pure client side of a gRPC response (no libevent, no nghttp2, no logging):
 * collects the response's header fields (:status, grpc-status, grpc-message, in the headers or the
 * trailers) and decides the call's status once the stream has ended. Used by gclient.c; unit
 * tested in tests/unit/test_grpc_resp.c. */
#ifndef GW_GRPC_RESP_H
#define GW_GRPC_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GW_GRPC_RESP_MSG_MAX 256u

struct gw_grpc_resp {
    int http_status; /* -1 when absent or malformed */
    int grpc_status; /* -1 when absent or malformed (not 0..16) */
    bool has_grpc_status;
    char grpc_message[GW_GRPC_RESP_MSG_MAX]; /* percent-decoded, control bytes as '?' */
};

void gw_grpc_resp_init(struct gw_grpc_resp *r);

/* Records one header field (lower-case name, as HTTP/2 requires); others are ignored. */
void gw_grpc_resp_header(struct gw_grpc_resp *r, const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen);

/* The status of a stream that ended cleanly (no reset) with `messages` whole messages received
 * and `partial` true when a message was cut short. Writes the reason (for a status other than
 * OK) into msg: the server's grpc-message, or the client's own words (never response data
 * beyond grpc-message). HTTP statuses other than 200 map as gRPC's PROTOCOL-HTTP2 says; a
 * missing or malformed grpc-status is INTERNAL; OK needs exactly one whole message. */
enum gw_grpc_status gw_grpc_resp_verdict(const struct gw_grpc_resp *r, unsigned messages,
                                         bool partial, char *msg, size_t msglen);

#endif
