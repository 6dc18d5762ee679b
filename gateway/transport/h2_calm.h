/* h2_calm.h: one HTTP/2 connection's budgets for the frames a client can send without asking
 * for any work (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM) and for the TLS 1.3
 * KeyUpdate messages under it (conn.c counts them, h2.c charges them), and the rate limit of its
 * per-stream log lines. Pure: no libevent, no nghttp2, no logging; the caller passes the time,
 * so tests drive it without a clock.
 *
 * Each kind has a token bucket: a burst, a refill per second, and credit earned by the work the
 * frame accompanies in a well-behaved client (a stream opened, a DATA or HEADERS frame we sent:
 * a client's WINDOW_UPDATEs and PINGs follow our output). A frame over its budget is a flood;
 * the session answers it with GOAWAY ENHANCE_YOUR_CALM. The RST_STREAM budget also pays for the
 * resets a client provokes (gw_h2_calm_provoked): a malformed or protocol-violating stream that
 * the server resets frees its slot as surely as the client's own reset does (CVE-2025-8671
 * "MadeYouReset"; Debian's nghttp2 1.52 predates its own fix). Every bound below is at least ten
 * times what grpc-core, grpc-go or grpc-java send (keepalive and BDP pings, window updates; a
 * KeyUpdate only from Java's JSSE, once per 2^37 bytes with AES-GCM, and from none unasked). */
#ifndef GW_H2_CALM_H
#define GW_H2_CALM_H

#include <stdbool.h>
#include <stdint.h>

#include "ratelimit.h"

enum gw_h2_calm_kind {
    GW_H2_CALM_PING,
    GW_H2_CALM_SETTINGS,
    GW_H2_CALM_WINDOW_UPDATE,
    GW_H2_CALM_PRIORITY,
    GW_H2_CALM_RST_STREAM,
    GW_H2_CALM_KEY_UPDATE, /* TLS, not HTTP/2: never returned by gw_h2_calm_kind_of */
    GW_H2_CALM_NKINDS
};

/* Per-kind bounds: burst frames at once, refill frames per second. */
#define GW_H2_CALM_PING_BURST 100u
#define GW_H2_CALM_PING_RATE 10u
#define GW_H2_CALM_SETTINGS_BURST 50u
#define GW_H2_CALM_SETTINGS_RATE 5u
#define GW_H2_CALM_WINDOW_UPDATE_BURST 1000u
#define GW_H2_CALM_WINDOW_UPDATE_RATE 100u
#define GW_H2_CALM_PRIORITY_BURST 200u
#define GW_H2_CALM_PRIORITY_RATE 20u
#define GW_H2_CALM_RST_STREAM_BURST 400u /* CVE-2023-44487 "rapid reset" */
#define GW_H2_CALM_RST_STREAM_RATE 40u
/* Each costs two key derivations, new cipher contexts and (update_requested) a record back. */
#define GW_H2_CALM_KEY_UPDATE_BURST 32u
#define GW_H2_CALM_KEY_UPDATE_RATE 1u

/* Per-stream log lines: at most BURST in a row, then RATE per second on one connection; the next
 * line written after some were dropped says how many. */
#define GW_H2_CALM_LOG_BURST 20u
#define GW_H2_CALM_LOG_RATE 2u

struct gw_h2_calm {
    struct gw_bucket kind[GW_H2_CALM_NKINDS];
    struct gw_lines log;
};

/* Starts every bucket full at now_ms. */
void gw_h2_calm_init(struct gw_h2_calm *c, uint64_t now_ms);

/* The kind of an HTTP/2 frame type (RFC 9113 numbers), or GW_H2_CALM_NKINDS when the type has
 * no budget (DATA, HEADERS, ... cost work we account for elsewhere). ack: the frame's ACK flag
 * (a SETTINGS or PING ACK answers us and is not counted). */
enum gw_h2_calm_kind gw_h2_calm_kind_of(uint8_t type, bool ack);

/* Takes one frame of kind k. Returns true when it is within budget, false when it is a flood. */
bool gw_h2_calm_take(struct gw_h2_calm *c, enum gw_h2_calm_kind k, uint64_t now_ms);

/* Is a RST_STREAM we send with this error code (RFC 9113 7) one the client provoked? The gateway's
 * own resets use only NO_ERROR (a stream left open after our answer), CANCEL (a stalled reader)
 * and INTERNAL_ERROR (out of memory, ours or a callback of ours that failed); every other code is
 * nghttp2 answering the client's stream (PROTOCOL_ERROR: a forbidden or malformed header, a
 * content-length mismatch; FLOW_CONTROL_ERROR; STREAM_CLOSED; REFUSED_STREAM: over our
 * SETTINGS_MAX_CONCURRENT_STREAMS; ...), and so is an unknown one. */
bool gw_h2_calm_provoked(uint32_t error_code);

/* Credit for work: a stream the client opened, and a frame of this type we sent (only DATA and
 * HEADERS earn any). */
void gw_h2_calm_stream_opened(struct gw_h2_calm *c);
void gw_h2_calm_frame_sent(struct gw_h2_calm *c, uint8_t type);

/* Client side (the forwarder's, gclient.c): a request we opened, which the server may reset once
 * (answering before the request ended: RST_STREAM NO_ERROR) and re-prioritise. */
void gw_h2_calm_request_sent(struct gw_h2_calm *c);

/* "PING", "SETTINGS", ..., "TLS KeyUpdate or renegotiation" for the log. */
const char *gw_h2_calm_name(enum gw_h2_calm_kind k);

/* May a per-stream log line be written now? Only when both the connection's budget and gateway
 * (the gateway's budget of per-stream lines shared by every connection; NULL: none) allow it
 * (gw_lines_take). *dropped (when not NULL) receives how many of this connection's lines were
 * dropped since the last one allowed (then reset). */
bool gw_h2_calm_log_ok(struct gw_h2_calm *c, struct gw_lines *gateway, uint64_t now_ms,
                       uint64_t *dropped);

#endif
