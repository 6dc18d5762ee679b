/* ctl_record.h: the audit record of a waygatectl action (Art. 31, 33), appended to the chain
 * 'ctl' through gw_admin_audit inside the action's own transaction, so that the change and its
 * record commit together or not at all. Internal to the CLI. */
#ifndef GW_CTL_RECORD_H
#define GW_CTL_RECORD_H

#include <stdint.h>

#include "crypto.h"

struct gw_admin;
struct gw_sign_key;

/* The keyring's audit key (its current suite's: Ed25519 or SM2, audit_signer.h) when
 * $WAYGATE_KEYRING names a keyring this user can read, else NULL (then the CLI's audit records go
 * without a signed checkpoint: `audit verify` reports them as not yet covered). Loaded once per
 * process. The suite is the keyring's default (aes when it has it, else sm) unless the command
 * chose one first (ctl_audit_use_suite); a keyring without the chosen suite gives NULL. */
const struct gw_sign_key *ctl_audit_key(void);

/* Makes ctl_audit_key sign with suite's audit key (a command's --suite, `audit export`). Call it
 * before anything is recorded: the key is loaded once. */
void ctl_audit_use_suite(enum gw_suite suite);

/* The audit vocabulary's action for a CLI command's admin_log action ("principals.add" ->
 * "principal.add", "keys.rotate" -> "key.rotate", ...), or NULL for a command that changes
 * nothing (lists): ctl_record then records it under its own name ("principals.list"). */
const char *ctl_record_action(const char *admin_action);

/* Appends one record (actor; peer "local"; action ctl_record_action(admin_action), else
 * admin_action itself; object, count (< 0: absent), outcome, detail: never a secret) inside the
 * transaction open on a, followed by a checkpoint signed with the keyring's audit seed when
 * $WAYGATE_KEYRING names one (ctl_audit_seed). Returns 0; GW_CTL_FAIL after printing
 * "waygatectl <cmd>: ..." to stderr (the caller rolls back: the action must not happen without
 * its record). */
int ctl_record(struct gw_admin *a, const char *cmd, const char *actor, const char *admin_action,
               const char *object, int64_t count, const char *outcome, const char *detail);

#endif
