/* report.h: the monthly regulator report (Art. 17, 26, 37, 16) as numbers and as documents: the
 * month's bounds in China Standard Time (UTC+08:00), and the report rendered as JSON and as CSV.
 * The same code serves Compliance.Report (gateway) and `waygatectl report monthly` (CLI), so the
 * two never disagree. Counts only: a report holds no PII and no detail of a lawful-access case.
 * Pure: no I/O, no logging. */
#ifndef GW_REPORT_H
#define GW_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Incident severities, in the order of the incident table's CHECK. */
enum gw_report_sev { GW_SEV_LOW, GW_SEV_MEDIUM, GW_SEV_HIGH, GW_SEV_CRITICAL, GW_SEV_COUNT };
extern const char *const gw_report_sev_names[GW_SEV_COUNT];

/* Every count of one report; month "YYYY-MM". Where a count comes from is said in
 * docs/compliance-matrix.md and in store_report.h (audit_record actions, the incident table,
 * the suspicious-customer register). */
struct gw_report {
    char month[8];
    int64_t from_us, to_us; /* the month: [from, to), microseconds since the epoch */
    int64_t generated_at;   /* seconds since the epoch */
    uint64_t bulk_requested, bulk_approved, bulk_rejected, bulk_executed;
    uint64_t lawful_requested, lawful_approved, lawful_rejected, lawful_reads;
    uint64_t incidents[GW_SEV_COUNT];
    uint64_t destruction_records; /* retention batches and approved destructions run */
    uint64_t records_destroyed;
    uint64_t account_changes;   /* account.create, account.disable(_inactive), password.change */
    uint64_t principal_changes; /* principal.add, principal.disable */
    uint64_t refused;           /* security-relevant refusals (outcome "refused") */
    uint64_t suspicious;        /* size of the suspicious-customer register when generated */
};

/* The sum of r->incidents. */
uint64_t gw_report_incidents(const struct gw_report *r);

/* Parses month "YYYY-MM" (year 2000..9999, month 01..12, nothing else) and sets *from_us and
 * *to_us to the first microsecond of that month and of the next one in UTC+08:00. Returns 0 or
 * GW_EINVAL. */
int gw_report_month(const char *month, int64_t *from_us, int64_t *to_us) GW_MUST_CHECK;
/* Whether the month that begins at from_us (gw_report_month's) has begun at now_us: a report of
 * a month to come would count nothing, and is refused rather than recorded. */
bool gw_report_month_begun(int64_t from_us, int64_t now_us);

/* Severity name -> index, or -1. */
int gw_report_sev_index(const char *name);

/* The report as one JSON object / as CSV ("metric,value" lines after a header) into buf (cap
 * bytes, NUL-terminated) and *len (without the NUL). Returns 0, or GW_ETOOBIG (*len: the size
 * needed, without the NUL). GW_REPORT_DOC_MAX always suffices. */
#define GW_REPORT_DOC_MAX 2048
int gw_report_json(const struct gw_report *r, char *buf, size_t cap, size_t *len) GW_MUST_CHECK;
int gw_report_csv(const struct gw_report *r, char *buf, size_t cap, size_t *len) GW_MUST_CHECK;

/* Compliance.Report's count holds one pool connection for up to [compliance] report_timeout_ms;
 * on a pool smaller than this it would stall every other request meanwhile, so the gateway
 * refuses to count instead (pool_size 1 stays a valid setting: a gateway that makes no reports,
 * the benchmarks of docs/performance.md). */
#define GW_REPORT_POOL_MIN 2

/* Whether the gateway may count a report on a pool of pool connections: 0, or GW_EPRECOND with
 * *f (not NULL) (FAILED_PRECONDITION naming [database] pool_size, its bound GW_REPORT_POOL_MIN and
 * [compliance] report_timeout_ms). */
int gw_report_pool_check(unsigned pool, struct gw_fault *f);

/* A report whose counts ended with err (not 0) is not made, but its attempt is recorded: fills
 * *f with what the caller is told (GW_ETIMEOUT, a count cancelled by [compliance]
 * report_timeout_ms: DEADLINE_EXCEEDED on "month" naming the key and timeout_ms; GW_EUNAVAIL or
 * GW_EQUEUEFULL, the database away or its queue full: UNAVAILABLE; anything else: INTERNAL) and
 * returns the outcome of the attempt's report.generate record: "timeout" or "failed". f: not
 * NULL. */
const char *gw_report_not_counted(int err, uint32_t timeout_ms, struct gw_fault *f);

#endif
