/* api_compliance.c: the helpers of api_compliance.h: the audit record of a compliance action by
 * the caller, and field paths to columns. Invariant: nothing here holds PII. */
#include "api_compliance.h"

#include <string.h>

#include "identity.h"
#include "log.h"

void gw_api_compliance_rec(struct gw_call *call, struct gw_audit_rec *r, const char *action,
                           const char *outcome)
{
    const struct gw_principal *p = gw_call_principal(call);
    const struct gw_log_ctx *lc = gw_call_log_ctx(call);

    memset(r, 0, sizeof(*r));
    r->actor = p->name;
    r->role = p->role[0] != '\0' ? p->role : NULL;
    r->peer = lc != NULL && lc->peer != NULL ? lc->peer : p->peer[0] != '\0' ? p->peer : NULL;
    r->cert = p->cert[0] != '\0' ? p->cert : NULL;
    r->branch = p->branch[0] != '\0' ? p->branch : NULL;
    r->action = action;
    r->outcome = outcome;
    r->count = -1;
}

enum gw_col gw_api_col_of(const char *path, size_t n)
{
    for (size_t c = 0; c < GW_COL_COUNT; c++)
        if (strlen(gw_col_field[c]) == n && memcmp(gw_col_field[c], path, n) == 0)
            return (enum gw_col)c;
    return GW_COL_COUNT;
}
