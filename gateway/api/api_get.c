/* api_get.c: the entry of waygate.v1.WaybillQuery/Get: a lawful_access caller reads the waybills
 * of its approved lawful-access cases (api_lawful_read.c, Art. 16), every other role its scope
 * as its view shows it (api_query.c). Above both, so neither needs the other. A lawful read is
 * confidential: counted in no per-method metric and named in no log line, as the lawful-access
 * methods are (methods.c). The call is so already, as every call of a lawful_access account is
 * from its identity step on (call.c); marked here again so that the read does not depend on
 * the dispatcher's rule. */
#include <string.h>

#include "api.h"
#include "api_compliance.h"

void gw_api_get(struct gw_call *call, const uint8_t *req, size_t len)
{
    if (strcmp(gw_call_principal(call)->role, "lawful_access") == 0) {
        gw_call_set_confidential(call); /* a lawful read: no metric, no log line (Art. 16) */
        gw_api_lawful_get(call, req, len);
    } else {
        gw_api_query_get(call, req, len);
    }
}
