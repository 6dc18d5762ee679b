/* store_export_admin.h: the CLI's reads of bulk exports (sql/009_bulk.sql) for `waygatectl export
 * trace`: every export that ran, with its watermark id and who requested and approved it, and the
 * audit records the gateway wrote of its request (what the chain says beside what the table says).
 * Blocking libpq on the CLI's connection (store_admin.h); never used by the daemon. */
#ifndef GW_STORE_EXPORT_ADMIN_H
#define GW_STORE_EXPORT_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store_admin.h"

/* One export that ran (strings valid during the callback; times in UTC, "" when absent). */
struct gw_admin_export {
    uint8_t export_id[16];
    const char *export_text, *request_id, *operation;
    const char *requester, *requester_role, *requested_at;
    const char *approver, *approver_role, *decided_at, *run_at;
    const char *purpose, *legal_basis, *destination;
    int64_t record_count;
};
typedef void (*gw_admin_export_cb)(void *arg, const struct gw_admin_export *e);

/* Calls cb for every export or copy that ran, oldest first. Returns 0 or GW_EINTERNAL (errbuf
 * holds the server's one-line message). */
int gw_admin_exports(struct gw_admin *a, gw_admin_export_cb cb, void *arg, char *errbuf,
                     size_t errlen) GW_MUST_CHECK;

/* One audit record of a bulk request (strings valid during the callback; "" when absent). */
struct gw_admin_bulk_rec {
    const char *chain, *action, *outcome, *actor, *role, *detail;
    int64_t seq;
};
typedef void (*gw_admin_bulk_rec_cb)(void *arg, const struct gw_admin_bulk_rec *r);

/* Calls cb for every bulk.request, bulk.approve, bulk.reject and bulk.run record of the request
 * request_id (its approval reference), of every chain, in the order written. The records are read
 * as stored: that the chain holds them unaltered is `waygatectl audit verify`'s to prove. Returns 0
 * or GW_EINTERNAL (errbuf holds the server's one-line message). */
int gw_admin_export_records(struct gw_admin *a, const char *request_id, gw_admin_bulk_rec_cb cb,
                            void *arg, char *errbuf, size_t errlen) GW_MUST_CHECK;

#endif
