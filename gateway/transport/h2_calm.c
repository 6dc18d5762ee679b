/* h2_calm.c: the control-frame budgets and the per-stream log limit of one HTTP/2 connection
 * (see h2_calm.h). Invariants: a bucket never holds more than its burst; time going backwards
 * refills nothing; the arithmetic is in integers (milli-tokens) and cannot overflow for any
 * uptime. */
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
};

static const struct bounds log_bounds = {GW_H2_CALM_LOG_BURST, GW_H2_CALM_LOG_RATE, "log"};

static void refill(struct gw_h2_calm_bucket *b, const struct bounds *bd, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)bd->burst * 1000u, elapsed;

    if (now_ms <= b->last_ms)
        return;
    elapsed = now_ms - b->last_ms;
    b->last_ms = now_ms;
    /* rate tokens per second = rate milli-tokens per ms; a long pause just fills the bucket */
    if (elapsed >= cap || b->milli + elapsed * bd->rate >= cap)
        b->milli = cap;
    else
        b->milli += elapsed * bd->rate;
}

static void credit(struct gw_h2_calm_bucket *b, const struct bounds *bd, uint32_t frames)
{
    uint64_t cap = (uint64_t)bd->burst * 1000u;

    b->milli = b->milli + (uint64_t)frames * 1000u >= cap ? cap : b->milli + frames * 1000u;
}

void gw_h2_calm_init(struct gw_h2_calm *c, uint64_t now_ms)
{
    for (size_t k = 0; k < GW_H2_CALM_NKINDS; k++)
        c->kind[k] = (struct gw_h2_calm_bucket){(uint64_t)kinds[k].burst * 1000u, now_ms};
    c->log = (struct gw_h2_calm_bucket){(uint64_t)log_bounds.burst * 1000u, now_ms};
    c->log_dropped = 0;
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
    struct gw_h2_calm_bucket *b;

    if (k >= GW_H2_CALM_NKINDS)
        return true;
    b = &c->kind[k];
    refill(b, &kinds[k], now_ms);
    if (b->milli < 1000u)
        return false;
    b->milli -= 1000u;
    return true;
}

void gw_h2_calm_stream_opened(struct gw_h2_calm *c)
{
    /* A stream may be re-prioritised. No RST_STREAM credit: opening and resetting streams is
     * the rapid-reset attack itself. */
    credit(&c->kind[GW_H2_CALM_PRIORITY], &kinds[GW_H2_CALM_PRIORITY], 2);
}

void gw_h2_calm_frame_sent(struct gw_h2_calm *c, uint8_t type)
{
    /* Only DATA and HEADERS earn credit: a client acknowledges our output with window updates
     * (stream and connection) and measures it with BDP pings. A PING or SETTINGS ACK earns
     * nothing, or a flood would pay for itself. */
    if (type != 0x0 && type != 0x1)
        return;
    credit(&c->kind[GW_H2_CALM_WINDOW_UPDATE], &kinds[GW_H2_CALM_WINDOW_UPDATE], 2);
    credit(&c->kind[GW_H2_CALM_PING], &kinds[GW_H2_CALM_PING], 1);
}

const char *gw_h2_calm_name(enum gw_h2_calm_kind k)
{
    return k < GW_H2_CALM_NKINDS ? kinds[k].name : "?";
}

bool gw_h2_calm_log_ok(struct gw_h2_calm *c, uint64_t now_ms, uint64_t *dropped)
{
    refill(&c->log, &log_bounds, now_ms);
    if (c->log.milli < 1000u) {
        c->log_dropped++;
        return false;
    }
    c->log.milli -= 1000u;
    if (dropped != NULL)
        *dropped = c->log_dropped;
    c->log_dropped = 0;
    return true;
}
