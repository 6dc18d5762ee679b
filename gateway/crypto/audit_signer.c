/* audit_signer.c: suite -> signature algorithm and key (audit_signer.h). */
#include "audit_signer.h"

#include "keyring.h"

enum gw_sign_alg gw_audit_sign_alg(enum gw_suite suite)
{
    return suite == GW_SUITE_SM ? GW_SIGN_SM2 : GW_SIGN_ED25519;
}

int gw_audit_signer(const struct gw_keyring *kr, struct gw_sign_key *out)
{
    enum gw_suite suite = kr ? gw_keyring_suite(kr) : GW_SUITE_AES;
    out->alg = gw_audit_sign_alg(suite);
    out->seed = kr ? gw_keyring_audit_seed(kr, suite) : NULL;
    return out->seed ? 0 : GW_EPRECOND;
}
