/* api_render.h: the one rendering of a waybill as a role may see it (view.h, the policy's
 * [view.<role>]), for code outside a call: the outbox forwarder renders the backend role's view
 * with it, through the same code as WaybillQuery/Get (api_query.c). Invariant: the clear values
 * given and the rendering live in arena a only (the caller frees it, which wipes them). */
#ifndef GW_API_RENDER_H
#define GW_API_RENDER_H

#include "waygate/v1/query.pb-c.h"

#include "err.h"
#include "record.h"
#include "waybill.h"

struct gw_app;
struct gw_arena;
struct gw_policy;
struct gw_sealed_waybill;

/* Renders the authenticated row (clear: its opened fields) as role sees it under pol into *view
 * (everything in arena a; view->status is "accepted", the caller sets the current one). Returns
 * 0 or a gw_err. */
int gw_api_render_role_in(struct gw_app *app, const struct gw_policy *pol, const char *role,
                          struct gw_arena *a, const struct gw_sealed_waybill *row,
                          const struct gw_str clear[GW_COL_COUNT],
                          Waygate__V1__WaybillView *view) GW_MUST_CHECK;

#endif
