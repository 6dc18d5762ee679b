/* ctl_record.h: the audit record of a waygatectl action (Art. 31, 33), appended to the chain
 * 'ctl' through gw_admin_audit inside the action's own transaction, so that the change and its
 * record commit together or not at all. Internal to the CLI. */
#ifndef GW_CTL_RECORD_H
#define GW_CTL_RECORD_H

#include <stdint.h>

struct gw_admin;

/* The audit vocabulary's action for a CLI command's admin_log action ("principals.add" ->
 * "principal.add", "keys.rotate" -> "key.rotate", ...), or NULL for a command that changes
 * nothing (lists, status): those keep their admin_log row only. */
const char *ctl_record_action(const char *admin_action);

/* Appends one record (actor; peer "local"; action from ctl_record_action(admin_action); object,
 * count (< 0: absent), outcome, detail: never a secret) inside the transaction open on a.
 * Returns 0; GW_CTL_FAIL after printing "waygatectl <cmd>: ..." to stderr (the caller rolls back:
 * the action must not happen without its record). An admin_action without an audit action is a
 * no-op returning 0. */
int ctl_record(struct gw_admin *a, const char *cmd, const char *actor, const char *admin_action,
               const char *object, int64_t count, const char *outcome, const char *detail);

#endif
