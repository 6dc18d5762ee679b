/* kek_check.h: a keyring's KEK versions compared with the database's (sql/036_kek_version.sql),
 * for the gateway (at start and at each keyring reload, on its pool) and waygatectl's keys
 * commands (on their blocking connection): the statements, their parameters built from
 * gw_keyring_kek_checks, the reading of their rows and the one wording of a mismatch. Pure but
 * for the PGresult it reads. */
#ifndef GW_KEK_CHECK_H
#define GW_KEK_CHECK_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keyring.h"

/* Registers the versions the table lacks (first writer wins), then compares: one row per
 * version, (suite, version, 'new' | 'same' | 'other'). $1..$3 from gw_kek_check_params, $4 who
 * brings them. */
#define GW_KEK_MEET_SQL                                                                            \
    "SELECT m_suite, m_version, m_outcome FROM kek_version_meet($1::integer[], $2::integer[], "    \
    "$3::text[], $4)"
/* Compares only (`keys status`, the version `keys retire` erases): 'absent' for a version the
 * table lacks. */
#define GW_KEK_COMPARE_SQL                                                                         \
    "SELECT u.s, u.v, CASE WHEN k.check_value IS NULL THEN 'absent' "                              \
    "WHEN k.check_value = decode(u.c, 'hex') THEN 'same' ELSE 'other' END "                        \
    "FROM unnest($1::integer[], $2::integer[], $3::text[]) AS u(s, v, c) "                         \
    "LEFT JOIN kek_version k ON k.suite = u.s AND k.version = u.v ORDER BY 1, 2"

/* The three array parameters, as PostgreSQL array literals: suites, versions, check values (hex).
 * Owned: free with gw_kek_check_params_free. */
struct gw_kek_check_params {
    char *suites, *versions, *checks;
};

/* Builds the parameters of n check values (n may be 0: empty arrays). Returns 0 or GW_ENOMEM
 * (nothing to free). */
int gw_kek_check_params(const struct gw_keyring_check *c, size_t n,
                        struct gw_kek_check_params *p) GW_MUST_CHECK;
void gw_kek_check_params_free(struct gw_kek_check_params *p);

/* What the rows of either statement say. */
struct gw_kek_check_outcome {
    size_t registered;       /* 'new' rows */
    size_t absent;           /* 'absent' rows */
    int other_suite;         /* the first 'other' row's suite, 0 when none */
    uint32_t other_version;  /* ... and version */
    int absent_suite;        /* the first 'absent' row's suite, 0 when none */
    uint32_t absent_version; /* ... and version */
};

/* Reads the rows of res (PGRES_TUPLES_OK, text format) into *o. Returns 0, or GW_EINTERNAL when
 * a row is not (suite, version, outcome) or there are not `expected` rows. */
int gw_kek_check_read(const PGresult *res, size_t expected,
                      struct gw_kek_check_outcome *o) GW_MUST_CHECK;

/* The refusal of a version whose key is not the one the database knows under its number. */
void gw_kek_mismatch_msg(char *buf, size_t len, int suite, uint32_t version);

#endif
