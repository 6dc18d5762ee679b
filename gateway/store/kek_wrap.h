/* kek_wrap.h: the data-key wraps leased under each KEK version (sql/050_kek_wrap_lease.sql,
 * Art. 36; NIST SP 800-38D 8.3), for the gateway (blocks leased ahead on its pool, app/wrapguard.c)
 * and waygatectl's keys rewrap and migrate-suite (a batch leases exactly the wraps of the records
 * its SELECT returned, on a second blocking connection in autocommit) and keys status: the
 * statements, the reading of a lease's row, and the CLI's blocking calls. */
#ifndef GW_KEK_WRAP_H
#define GW_KEK_WRAP_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct gw_admin;

/* Leases up to $3 wraps under suite $1, version $2, the version's limit at most $4: one row
 * (granted, count after), or SQLSTATE GW_KEK_WRAP_AT_LIMIT when the version's count has reached
 * its limit. */
#define GW_KEK_WRAP_LEASE_SQL                                                                      \
    "SELECT l_granted, l_count FROM kek_wrap_lease($1::integer, $2::integer, $3::bigint, "         \
    "$4::bigint)"
/* The CLI's: all $3 or none (a batch is refused whole at the limit, using up nothing) */
#define GW_KEK_WRAP_LEASE_WHOLE_SQL                                                                \
    "SELECT l_granted, l_count FROM kek_wrap_lease($1::integer, $2::integer, $3::bigint, "         \
    "$4::bigint, true)"
#define GW_KEK_WRAP_AT_LIMIT "WK001"
/* The limit a wrapper passes unless configured otherwise: 2^31, half the bound */
#define GW_KEK_WRAP_LIMIT_DEFAULT 2147483648ull
/* Wraps the gateway leases at once: a crash or restart wastes at most this many */
#define GW_KEK_WRAP_BLOCK 65536u

/* Reads a lease's row (text format) into *granted (>= 1) and *count. Returns 0 or
 * GW_EINTERNAL. */
int gw_kek_wrap_read(const PGresult *res, uint64_t *granted, uint64_t *count) GW_MUST_CHECK;

/* A batch's lease of exactly n (1 .. 2^20) wraps under (suite, version), the limit
 * GW_KEK_WRAP_LIMIT_DEFAULT, on a, a connection in autocommit that is not the batch's (the lease
 * is committed whatever the batch then does): all n or none, so that a batch the limit leaves
 * short uses up nothing of what the gateways still lease (review: a partial grant followed by a
 * refused lease of the rest put the version at its limit). Returns 0 when all n are granted;
 * GW_EPRECOND when n would pass the limit (errbuf: the database's words, naming the rotation;
 * nothing counted); GW_EINTERNAL. */
int gw_admin_wrap_cover(struct gw_admin *a, int suite, uint32_t version, uint64_t n, char *errbuf,
                        size_t errlen) GW_MUST_CHECK;

/* Wraps leased under one KEK version and its limit (keys status). */
struct gw_admin_wrap_count {
    int suite;
    uint32_t version;
    long long leased;
    long long limit;
};

/* Every version's row, ascending: *out (freed with gw_free; NULL when none) and *n. Returns 0,
 * GW_EPRECOND (not migrated that far), GW_ENOMEM or GW_EINTERNAL. */
int gw_admin_wrap_counts(struct gw_admin *a, struct gw_admin_wrap_count **out, size_t *n,
                         char *errbuf, size_t errlen) GW_MUST_CHECK;

#endif
