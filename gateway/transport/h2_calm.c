/* h2_calm.c: the control-frame budgets and the per-stream log limit of one HTTP/2 connection
 * (see h2_calm.h), on ratelimit.h's buckets. */
#include "h2_calm.h"

#include <stddef.h>

struct bounds {
    uint32_t burst, rate;
    const char *name;
};

static const struct bounds kinds[GW_H2_CALM_NKINDS] = {
    [GW_H2_CALM_PING] = {GW_H2_CALM_PING_BURST, GW_H2_CALM_PING_RATE, "PING"},
    [GW_H2_CALM_SETTINGS] = {GW_H2_CALM_SETTINGS_BURST, GW_H2_CALM_SETTINGS_RATE, "SETTINGS"},
    [GW_H2_CALM_WINDOW_UPDATE] = {GW_H2_CALM_WINDOW_UPDATE_BURST, GW_H2_CALM_WINDOW_UPDATE_RATE,
                                  "WINDOW_UPDATE"},
    [GW_H2_CALM_PRIORITY] = {GW_H2_CALM_PRIORITY_BURST, GW_H2_CALM_PRIORITY_RATE, "PRIORITY"},
    [GW_H2_CALM_RST_STREAM] = {GW_H2_CALM_RST_STREAM_BURST, GW_H2_CALM_RST_STREAM_RATE,
                               "RST_STREAM"},
    [GW_H2_CALM_KEY_UPDATE] = {GW_H2_CALM_KEY_UPDATE_BURST, GW_H2_CALM_KEY_UPDATE_RATE,
                               "TLS KeyUpdate or renegotiation"},
};

void gw_h2_calm_init(struct gw_h2_calm *c, uint64_t now_ms)
{
    for (size_t k = 0; k < GW_H2_CALM_NKINDS; k++)
        gw_bucket_init(&c->kind[k], kinds[k].burst, now_ms);
    gw_lines_init(&c->log, GW_H2_CALM_LOG_BURST, GW_H2_CALM_LOG_RATE, now_ms);
}

enum gw_h2_calm_kind gw_h2_calm_kind_of(uint8_t type, bool ack)
{
    switch (type) {
    case 0x2:
        return GW_H2_CALM_PRIORITY;
    case 0x3:
        return GW_H2_CALM_RST_STREAM;
    case 0x4:
        return ack ? GW_H2_CALM_NKINDS : GW_H2_CALM_SETTINGS;
    case 0x6:
        return ack ? GW_H2_CALM_NKINDS : GW_H2_CALM_PING;
    case 0x8:
        return GW_H2_CALM_WINDOW_UPDATE;
    default:
        return GW_H2_CALM_NKINDS;
    }
}

bool gw_h2_calm_take(struct gw_h2_calm *c, enum gw_h2_calm_kind k, uint64_t now_ms)
{
    if (k >= GW_H2_CALM_NKINDS)
        return true;
    return gw_bucket_take(&c->kind[k], kinds[k].burst, kinds[k].rate, now_ms);
}

bool gw_h2_calm_provoked(uint32_t error_code)
{
    switch (error_code) {
    case 0x0: /* NO_ERROR */
    case 0x2: /* INTERNAL_ERROR */
    case 0x8: /* CANCEL */
        return false;
    default:
        return true;
    }
}

void gw_h2_calm_stream_opened(struct gw_h2_calm *c)
{
    /* A stream may be re-prioritised. No RST_STREAM credit: opening and resetting streams is
     * the rapid-reset attack itself. */
    gw_bucket_credit(&c->kind[GW_H2_CALM_PRIORITY], kinds[GW_H2_CALM_PRIORITY].burst, 2);
}

void gw_h2_calm_request_sent(struct gw_h2_calm *c)
{
    /* Unlike a server's, a client's streams are opened by us: a reset of one is no flood. */
    gw_bucket_credit(&c->kind[GW_H2_CALM_RST_STREAM], kinds[GW_H2_CALM_RST_STREAM].burst, 1);
    gw_bucket_credit(&c->kind[GW_H2_CALM_PRIORITY], kinds[GW_H2_CALM_PRIORITY].burst, 2);
}

void gw_h2_calm_frame_sent(struct gw_h2_calm *c, uint8_t type)
{
    /* Only DATA and HEADERS earn credit: a client acknowledges our output with window updates
     * (stream and connection) and measures it with BDP pings. A PING or SETTINGS ACK earns
     * nothing, or a flood would pay for itself. */
    if (type != 0x0 && type != 0x1)
        return;
    gw_bucket_credit(&c->kind[GW_H2_CALM_WINDOW_UPDATE], kinds[GW_H2_CALM_WINDOW_UPDATE].burst, 2);
    gw_bucket_credit(&c->kind[GW_H2_CALM_PING], kinds[GW_H2_CALM_PING].burst, 1);
}

const char *gw_h2_calm_name(enum gw_h2_calm_kind k)
{
    return k < GW_H2_CALM_NKINDS ? kinds[k].name : "?";
}

bool gw_h2_calm_log_ok(struct gw_h2_calm *c, struct gw_lines *gateway, uint64_t now_ms,
                       uint64_t *dropped)
{
    if (!gw_lines_take(&c->log, gateway, now_ms))
        return false;
    if (dropped != NULL)
        *dropped = c->log.dropped;
    c->log.dropped = 0;
    return true;
}
