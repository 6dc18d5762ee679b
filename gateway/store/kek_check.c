/* kek_check.c: the parameters and rows of the KEK version check (kek_check.h). Invariants: a check
 * value is written as hex of its 32 bytes, never a key; a row that is not what the statements
 * return fails the whole reading (the caller refuses rather than vouching). */
#include "kek_check.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "crypto.h"

void gw_kek_check_params_free(struct gw_kek_check_params *p)
{
    gw_free(p->suites);
    gw_free(p->versions);
    gw_free(p->checks);
    memset(p, 0, sizeof *p);
}

int gw_kek_check_params(const struct gw_keyring_check *c, size_t n, struct gw_kek_check_params *p)
{
    static const char hex[] = "0123456789abcdef";
    size_t ls = 2 + n * 2, lv = 2 + n * 11, lc = 2 + n * (2 * GW_CRYPTO_MAC_LEN + 1);
    size_t os = 0, ov = 0, oc = 0;

    memset(p, 0, sizeof *p);
    p->suites = gw_malloc(ls + 1);
    p->versions = gw_malloc(lv + 1);
    p->checks = gw_malloc(lc + 1);
    if (!p->suites || !p->versions || !p->checks) {
        gw_kek_check_params_free(p);
        return GW_ENOMEM;
    }
    p->suites[os++] = p->versions[ov++] = p->checks[oc++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            p->suites[os++] = p->versions[ov++] = p->checks[oc++] = ',';
        os += (size_t)snprintf(p->suites + os, ls + 1 - os, "%d", (int)c[i].suite);
        ov += (size_t)snprintf(p->versions + ov, lv + 1 - ov, "%" PRIu32, c[i].version);
        for (size_t j = 0; j < GW_CRYPTO_MAC_LEN; j++) {
            p->checks[oc++] = hex[c[i].value[j] >> 4];
            p->checks[oc++] = hex[c[i].value[j] & 15];
        }
    }
    p->suites[os++] = p->versions[ov++] = p->checks[oc++] = '}';
    p->suites[os] = p->versions[ov] = p->checks[oc] = '\0';
    return 0;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *v)
{
    char *end = NULL;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    *v = strtoull(s, &end, 10);
    return *end == '\0' && *v <= max ? 0 : -1;
}

int gw_kek_check_read(const PGresult *res, size_t expected, struct gw_kek_check_outcome *o)
{
    int rows = PQntuples(res);

    memset(o, 0, sizeof *o);
    if (PQnfields(res) != 3 || rows < 0 || (size_t)rows != expected)
        return GW_EINTERNAL;
    for (int i = 0; i < rows; i++) {
        unsigned long long s, v;
        const char *what = PQgetvalue(res, i, 2);
        if (PQgetisnull(res, i, 0) || PQgetisnull(res, i, 1) ||
            parse_uint(PQgetvalue(res, i, 0), GW_SUITE_COUNT, &s) != 0 ||
            parse_uint(PQgetvalue(res, i, 1), GW_KEYRING_MAX_VERSION, &v) != 0)
            return GW_EINTERNAL;
        if (strcmp(what, "new") == 0) {
            o->registered++;
        } else if (strcmp(what, "absent") == 0) {
            if (o->absent++ == 0) {
                o->absent_suite = (int)s;
                o->absent_version = (uint32_t)v;
            }
        } else if (strcmp(what, "other") == 0) {
            if (o->other_suite == 0) {
                o->other_suite = (int)s;
                o->other_version = (uint32_t)v;
            }
        } else if (strcmp(what, "same") != 0) {
            return GW_EINTERNAL;
        }
    }
    return 0;
}

void gw_kek_mismatch_msg(char *buf, size_t len, int suite, uint32_t version)
{
    const char *sn = gw_suite_name((enum gw_suite)suite);
    snprintf(buf, len,
             "%s KEK version %" PRIu32 " in this keyring is not the key this database knows as %s "
             "version %" PRIu32 ": wrong database or a divergent keyring copy",
             sn, version, sn, version);
}
