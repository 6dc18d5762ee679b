/* audit_signer.h: the keyring's audit signing key for the suite new records use
 * (gw_keyring_suite): aes -> Ed25519 with `audit`, sm -> SM2 with `sm.audit` (issue 11). The one
 * place that maps a suite to its signature algorithm, so the daemon's chain, waygatectl's chain
 * and both exporters sign alike. */
#ifndef GW_AUDIT_SIGNER_H
#define GW_AUDIT_SIGNER_H

#include "crypto.h"
#include "err.h"
#include "sign.h"

struct gw_keyring;

/* The signature algorithm of a suite: aes -> Ed25519, sm -> SM2. */
enum gw_sign_alg gw_audit_sign_alg(enum gw_suite suite);

/* *out = the audit key of kr's current suite (out->seed points into kr, which must outlive it).
 * Returns 0, or GW_EPRECOND when the keyring has no audit key for that suite. */
int gw_audit_signer(const struct gw_keyring *kr, struct gw_sign_key *out) GW_MUST_CHECK;

#endif
