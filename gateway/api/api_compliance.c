/* api_compliance.c: the helpers of api_compliance.h: the audit record of a compliance action by
 * the caller, and field paths to columns. Invariant: nothing here holds PII. */
#include "api_compliance.h"
#include "api_record.h"

#include <string.h>

#include "identity.h"
#include "log.h"

void gw_api_compliance_rec(struct gw_call *call, struct gw_audit_rec *r, const char *action,
                           const char *outcome)
{
    gw_api_record_init(call, action, r);
    r->outcome = outcome;
}

enum gw_col gw_api_col_of(const char *path, size_t n)
{
    for (size_t c = 0; c < GW_COL_COUNT; c++)
        if (strlen(gw_col_field[c]) == n && memcmp(gw_col_field[c], path, n) == 0)
            return (enum gw_col)c;
    return GW_COL_COUNT;
}
