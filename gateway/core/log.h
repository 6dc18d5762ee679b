/* log.h: levelled logging, one JSON object per line on stderr:
 * {"time":"2026-11-27T07:43:04.123Z","level":"info","component":"conn","msg":"...",
 *  "request_id":"...","peer":"127.0.0.1:5555","principal":"courier_a"}
 * The level is checked before anything is formatted. Messages must never carry clear PII:
 * refer to a waybill by its record id, never by its number. */
#ifndef GW_LOG_H
#define GW_LOG_H

enum gw_log_level { GW_LOG_DEBUG = 0, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR, GW_LOG_OFF };

/* The one global besides the signal flag. */
extern enum gw_log_level gw_log_level;

/* Context carried by every line; any member may be NULL. */
struct gw_log_ctx {
    const char *request_id;
    const char *peer;
    const char *principal;
};

/* Parses "debug|info|warn|error|off"; returns 0 or GW_EINVAL. */
int gw_log_level_parse(const char *s, enum gw_log_level *out);

/* Writes one line (use the GW_LOG macro, which checks the level first). ctx may be NULL.
 * The formatted message is JSON-escaped; lines are truncated at 4 KiB. */
void gw_log_write(enum gw_log_level level, const char *component, const struct gw_log_ctx *ctx,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Points the log (fd 2) at the end of the file at path, created mode 0640 if missing: at start
 * when [log] file is set, and again on SIGUSR1 after a rotation renamed it. Returns 0 or GW_EIO
 * (the log then stays where it was). */
int gw_log_open(const char *path);

/* From now on libevent's own messages (its "[warn] ..." lines on stderr) are lines of this log,
 * component "libevent", at most 20 in a row and then 2 a second (the next one written counts
 * those left out): a failure libevent reports on every loop turn cannot flood the log, nor write
 * a line that is not JSON. Call once, before the loop runs. */
void gw_log_route_libevent(void);

#define GW_LOG(level, component, ctx, ...)                                                         \
    do {                                                                                           \
        if ((level) >= gw_log_level)                                                               \
            gw_log_write((level), (component), (ctx), __VA_ARGS__);                                \
    } while (0)

#endif
