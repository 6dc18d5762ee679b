/* policy_int.h: the inside of struct gw_policy, shared by policy.c (the checks) and
 * policy_file.c (the parser that fills it). Not for other modules. */
#ifndef GW_POLICY_INT_H
#define GW_POLICY_INT_H

#include <stdbool.h>

#include "policy.h"

#define GW_POLICY_NROLES 8        /* entries of gw_policy_roles, NULL excluded */
#define GW_POLICY_LEVEL_NONE (-1) /* a role absent from [levels]: sees no record at all */

struct gw_policy {
    unsigned refs; /* loop thread only */
    const struct gw_policy_method *extra;
    size_t nextra;
    unsigned char view[GW_POLICY_NROLES][GW_COL_COUNT]; /* enum gw_view_mode, 0 = omit */
    bool reveal[GW_POLICY_NROLES][GW_COL_COUNT];
    bool search[GW_POLICY_NROLES][GW_POLICY_SEARCH_NKEYS];
    int level[GW_POLICY_NROLES]; /* highest SecurityLevel value seen, or GW_POLICY_LEVEL_NONE */
    struct gw_policy_limits limits[GW_POLICY_NROLES];
};

/* The index of role in gw_policy_roles, or -1 (NULL or unknown). */
int gw_policy_role_index(const char *role);

/* A policy with nothing granted (every view omit, no level, no reveal, zero limits) and one
 * reference; NULL on allocation failure. */
struct gw_policy *gw_policy_alloc(const struct gw_policy_method *extra, size_t n);

/* NULL when a view may show col to role in mode, else the rule of the role's ceiling it breaks
 * (Art. 34, docs/policy.md "Ceilings"); a role without a ceiling may have any mode. */
const char *gw_policy_view_ceiling(const char *role, enum gw_col col, enum gw_view_mode mode);

/* deploy/policy.conf as text, compiled in (cmake/embed_policy.cmake). */
extern const char gw_policy_default_text[];
extern const size_t gw_policy_default_len;

#endif
