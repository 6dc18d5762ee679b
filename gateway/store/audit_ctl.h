/* audit_ctl.h: waygatectl's audit records (Art. 31, 33). The CLI appends to its own chain, 'ctl',
 * on its blocking connection (store_admin.h), serialised by a row lock on the chain's
 * audit_chain row: CLI commands are rare, so a lock there costs nothing, unlike in the gateway
 * (store/audit.h). Each record is followed by a signed checkpoint over it when the caller has the
 * keyring's audit key (of the keyring's suite: Ed25519 or SM2), so the CLI's chain has no
 * uncovered tail. */
#ifndef GW_AUDIT_CTL_H
#define GW_AUDIT_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "audit_rec.h"
#include "err.h"

struct gw_admin;

#define GW_AUDIT_CTL_CHAIN "ctl"

/* Appends r to chain 'ctl' inside the caller's open transaction (or, when none is open, in one of
 * its own), then a checkpoint signed with key when key is not NULL. *seq receives the record's
 * sequence number (seq may be NULL). Returns 0, GW_EINVAL (r breaks gw_audit_rec_check) or
 * GW_EINTERNAL (the database refused: errbuf says why; the caller's transaction is then failed
 * and must be rolled back). */
int gw_admin_audit(struct gw_admin *a, const struct gw_audit_rec *r, const struct gw_sign_key *key,
                   int64_t *seq, char *errbuf, size_t errlen) GW_MUST_CHECK;

#endif
