/* log.c: levelled JSON-line logging on stderr (fd 2).
 * Invariants: every line is one valid JSON object of at most GW_LOG_LINE_MAX bytes including its
 * newline, written with a single write(2); all strings are escaped and invalid UTF-8 replaced. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "err.h"
#include "ratelimit.h"

#define GW_LOG_LINE_MAX 4096 /* bytes of one line, newline included (== PIPE_BUF on Linux) */
#define GW_LOG_CTX_MAX 256   /* escaped bytes kept of one context value */
/* libevent's own messages (gw_log_route_libevent): at most 20 in a row, then 2 a second */
#define LIBEVENT_LOG_BURST 20u
#define LIBEVENT_LOG_RATE 2u

enum gw_log_level gw_log_level = GW_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int gw_log_level_parse(const char *s, enum gw_log_level *out)
{
    size_t i;

    if (s == NULL || out == NULL)
        return GW_EINVAL;
    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum gw_log_level)i;
            return 0;
        }
    }
    return GW_EINVAL;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if invalid
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A bounded output buffer; once an append does not fit, nothing more is appended. */
struct out {
    char *p;
    size_t len;
    size_t cap;
    int full;
};

static int put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return -1;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    return 0;
}

/* Appends s escaped for a JSON string (without quotes), never splitting an escape or a UTF-8
 * sequence; stops at the first piece that does not fit (o->full is then set). */
static void put_escaped(struct out *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    size_t i = 0;
    char esc[8];

    while (i < n && !o->full) {
        unsigned char c = s[i];
        size_t l;

        if (c == '"') {
            put(o, "\\\"", 2);
            i++;
        } else if (c == '\\') {
            put(o, "\\\\", 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(o, esc, 6);
            i++;
        } else if ((l = utf8_len(s + i, n - i)) == 0) {
            put(o, "\\ufffd", 6); /* invalid byte: U+FFFD REPLACEMENT CHARACTER */
            i++;
        } else {
            put(o, (const char *)s + i, l);
            i += l;
        }
    }
}

/* Appends ,"key":"value" with value escaped and capped at GW_LOG_CTX_MAX bytes. */
static void put_field(struct out *o, const char *key, const char *value)
{
    char buf[GW_LOG_CTX_MAX];
    struct out v = {buf, 0, sizeof(buf), 0};

    if (value == NULL)
        return;
    put_escaped(&v, value);
    put(o, ",\"", 2);
    put(o, key, strlen(key));
    put(o, "\":\"", 3);
    put(o, buf, v.len);
    put(o, "\"", 1);
}

void gw_log_write(enum gw_log_level level, const char *component, const struct gw_log_ctx *ctx,
                  const char *fmt, ...)
{
    char line[GW_LOG_LINE_MAX];
    char suffix[3 * (GW_LOG_CTX_MAX + 32)];
    char msg[GW_LOG_LINE_MAX];
    char ts[40];
    struct out o = {line, 0, sizeof(line), 0};
    struct out sfx = {suffix, 0, sizeof(suffix), 0};
    struct out m;
    struct timespec now;
    struct tm tm;
    va_list ap;
    size_t off;
    int saved_errno = errno;

    if (level < GW_LOG_DEBUG || level >= GW_LOG_OFF || level < gw_log_level)
        goto out;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    off = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + off, sizeof(ts) - off, ".%03ldZ", now.tv_nsec / 1000000L);

    /* the context goes after the message, so build it first and reserve its room */
    if (ctx != NULL) {
        put_field(&sfx, "request_id", ctx->request_id);
        put_field(&sfx, "peer", ctx->peer);
        put_field(&sfx, "principal", ctx->principal);
    }

    put(&o, "{\"time\":\"", 9);
    put(&o, ts, strlen(ts));
    put(&o, "\",\"level\":\"", 11);
    put(&o, level_names[level], strlen(level_names[level]));
    put(&o, "\",\"component\":\"", 15);
    {
        char cbuf[64];
        struct out c = {cbuf, 0, sizeof(cbuf), 0};
        put_escaped(&c, component != NULL ? component : "-");
        put(&o, cbuf, c.len);
    }
    put(&o, "\",\"msg\":\"", 9);

    /* the message gets what is left after the suffix, the closing "}\n and a truncation mark */
    m.p = line + o.len;
    m.len = 0;
    m.cap = o.cap - o.len - sfx.len - 3 - 3;
    m.full = 0;
    put_escaped(&m, msg);
    o.len += m.len;
    if (m.full || strlen(msg) == sizeof(msg) - 1)
        put(&o, "...", 3);
    put(&o, "\"", 1);
    put(&o, suffix, sfx.len);
    put(&o, "}\n", 2);

    off = 0;
    while (off < o.len) {
        ssize_t w = write(STDERR_FILENO, line + off, o.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
out:
    errno = saved_errno;
}

int gw_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    int rc = 0;

    if (fd < 0)
        return GW_EIO;
    if (dup2(fd, STDERR_FILENO) < 0)
        rc = GW_EIO;
    close(fd);
    return rc;
}

/* libevent's callback takes no argument: its budget is file state, touched only from the loop's
 * thread (libevent logs from the thread that calls it, and only the loop's thread calls it). */
static struct gw_lines libevent_lines;

static void libevent_log_cb(int severity, const char *msg)
{
    enum gw_log_level level = severity == EVENT_LOG_DEBUG  ? GW_LOG_DEBUG
                              : severity == EVENT_LOG_MSG  ? GW_LOG_INFO
                              : severity == EVENT_LOG_WARN ? GW_LOG_WARN
                                                           : GW_LOG_ERROR;
    uint64_t dropped;

    if (level < gw_log_level || !gw_lines_take(&libevent_lines, NULL, gw_clock_ms()))
        return;
    dropped = gw_lines_dropped(&libevent_lines);
    if (dropped > 0)
        gw_log_write(level, "libevent", NULL, "%s (%llu more of libevent's lines suppressed)", msg,
                     (unsigned long long)dropped);
    else
        gw_log_write(level, "libevent", NULL, "%s", msg);
}

void gw_log_route_libevent(void)
{
    gw_lines_init(&libevent_lines, LIBEVENT_LOG_BURST, LIBEVENT_LOG_RATE, gw_clock_ms());
    event_set_log_callback(libevent_log_cb);
}
