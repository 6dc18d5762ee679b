/* report.c: the monthly report's month arithmetic (UTC+08:00) and its JSON and CSV renderings,
 * from one table of metrics so that both documents always list the same numbers in the same
 * order. Invariant: every value written is a number or a constant name; nothing from a caller
 * but the month, which gw_report_month validated. */
#include "report.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *const gw_report_sev_names[GW_SEV_COUNT] = {"low", "medium", "high", "critical"};

#define CST_OFFSET_S (8 * 3600)

uint64_t gw_report_incidents(const struct gw_report *r)
{
    uint64_t n = 0;

    for (int i = 0; i < GW_SEV_COUNT; i++)
        n += r->incidents[i];
    return n;
}

int gw_report_sev_index(const char *name)
{
    for (int i = 0; name != NULL && i < GW_SEV_COUNT; i++)
        if (strcmp(gw_report_sev_names[i], name) == 0)
            return i;
    return -1;
}

/* Days from 1970-01-01 to y-m-01 (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int gw_report_month(const char *month, int64_t *from_us, int64_t *to_us)
{
    int64_t y, m, ny, nm;

    if (month == NULL || strlen(month) != 7 || month[4] != '-' || !digits(month, 4) ||
        !digits(month + 5, 2))
        return GW_EINVAL;
    y = (month[0] - '0') * 1000 + (month[1] - '0') * 100 + (month[2] - '0') * 10 + month[3] - '0';
    m = (month[5] - '0') * 10 + month[6] - '0';
    if (y < 2000 || m < 1 || m > 12)
        return GW_EINVAL;
    ny = m == 12 ? y + 1 : y;
    nm = m == 12 ? 1 : m + 1;
    *from_us = (days_from_civil(y, m) * 86400 - CST_OFFSET_S) * 1000000;
    *to_us = (days_from_civil(ny, nm) * 86400 - CST_OFFSET_S) * 1000000;
    return 0;
}

bool gw_report_month_begun(int64_t from_us, int64_t now_us)
{
    return from_us <= now_us;
}

/* One line of the report: its name in both documents and its value. */
struct metric {
    const char *name;
    uint64_t value;
};

static size_t metrics(const struct gw_report *r, struct metric *out)
{
    size_t n = 0;

    out[n++] = (struct metric){"bulk_requested", r->bulk_requested};
    out[n++] = (struct metric){"bulk_approved", r->bulk_approved};
    out[n++] = (struct metric){"bulk_rejected", r->bulk_rejected};
    out[n++] = (struct metric){"bulk_executed", r->bulk_executed};
    out[n++] = (struct metric){"lawful_access_requested", r->lawful_requested};
    out[n++] = (struct metric){"lawful_access_approved", r->lawful_approved};
    out[n++] = (struct metric){"lawful_access_rejected", r->lawful_rejected};
    out[n++] = (struct metric){"lawful_access_reads", r->lawful_reads};
    out[n++] = (struct metric){"incidents", gw_report_incidents(r)};
    for (int i = 0; i < GW_SEV_COUNT; i++)
        out[n++] = (struct metric){gw_report_sev_names[i], r->incidents[i]};
    out[n++] = (struct metric){"destruction_records", r->destruction_records};
    out[n++] = (struct metric){"records_destroyed", r->records_destroyed};
    out[n++] = (struct metric){"account_changes", r->account_changes};
    out[n++] = (struct metric){"principal_changes", r->principal_changes};
    out[n++] = (struct metric){"refused_attempts", r->refused};
    out[n++] = (struct metric){"suspicious_list_size", r->suspicious};
    return n;
}

#define NMETRICS_MAX 24

/* Appends to buf at *len, counting what would be needed past cap. */
static void __attribute__((format(printf, 4, 5)))
put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(*len < cap ? buf + *len : NULL, *len < cap ? cap - *len : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n;
}

static bool is_severity(size_t i)
{
    return i >= 9 && i < 9 + GW_SEV_COUNT; /* metrics(): the severities follow "incidents" */
}

int gw_report_json(const struct gw_report *r, char *buf, size_t cap, size_t *len)
{
    struct metric m[NMETRICS_MAX];
    size_t n = metrics(r, m), i;

    *len = 0;
    put(buf, cap, len,
        "{\"report\":\"waygate.monthly.v1\",\"month\":\"%s\",\"timezone\":\"+08:00\","
        "\"from_us\":%" PRId64 ",\"to_us\":%" PRId64 ",\"generated_at\":%" PRId64,
        r->month, r->from_us, r->to_us, r->generated_at);
    for (i = 0; i < n; i++) {
        if (is_severity(i)) {
            put(buf, cap, len, "%s\"%s\":%" PRIu64 "%s",
                i == 9 ? ",\"incidents_by_severity\":{" : ",", m[i].name, m[i].value,
                i == 9 + GW_SEV_COUNT - 1 ? "}" : "");
            continue;
        }
        put(buf, cap, len, ",\"%s\":%" PRIu64, m[i].name, m[i].value);
    }
    put(buf, cap, len, "}\n");
    return *len < cap ? 0 : GW_ETOOBIG;
}

int gw_report_csv(const struct gw_report *r, char *buf, size_t cap, size_t *len)
{
    struct metric m[NMETRICS_MAX];
    size_t n = metrics(r, m), i;

    *len = 0;
    put(buf, cap, len, "month,metric,value\n");
    for (i = 0; i < n; i++)
        put(buf, cap, len, "%s,%s%s,%" PRIu64 "\n", r->month, is_severity(i) ? "incidents_" : "",
            m[i].name, m[i].value);
    put(buf, cap, len, "%s,generated_at,%" PRId64 "\n", r->month, r->generated_at);
    return *len < cap ? 0 : GW_ETOOBIG;
}

int gw_report_pool_check(unsigned pool, struct gw_fault *f)
{
    if (pool >= GW_REPORT_POOL_MIN)
        return 0;
    (void)gw_fault_set(f, GW_EPRECOND, NULL, NULL, GW_RULE_REPORT_POOL);
    f->limit = GW_REPORT_POOL_MIN;
    return GW_EPRECOND;
}

const char *gw_report_not_counted(int err, uint32_t timeout_ms, struct gw_fault *f)
{
    if (err == GW_ETIMEOUT) {
        (void)gw_fault_set(f, GW_ETIMEOUT, NULL, "month", GW_RULE_REPORT_TIMEOUT);
        f->limit = timeout_ms;
        return "timeout";
    }
    if (err == GW_EUNAVAIL || err == GW_EQUEUEFULL) /* a full queue: err.c's one answer */
        (void)gw_fault_set(f, err, NULL, NULL, GW_RULE_DB_UNAVAILABLE);
    else
        (void)gw_fault_set(f, GW_EINTERNAL, NULL, NULL, GW_RULE_REPORT_NOT_COUNTED);
    return "failed";
}
