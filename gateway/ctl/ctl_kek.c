/* ctl_kek.c: a keyring's KEK versions vouched for by the database (Art. 36,
 * sql/036_kek_version.sql), for the keys commands (ctl_keys.c) and migrate-suite
 * (ctl_migrate_suite.c). Invariants: the check values are computed on a crypto context of their
 * own, freed at once; a version whose key is another is always a refusal, never a warning. */
#include <stdio.h>

#include "alloc.h"
#include "crypto.h"
#include "ctl.h"
#include "kek_check.h"
#include "keyring.h"
#include "store_admin.h"

int gw_ctl_kek_vouch(struct gw_admin *a, const struct gw_keyring_check *c, size_t n, const char *by,
                     struct gw_kek_check_outcome *o, char *err, size_t errlen)
{
    if (gw_admin_kek_check(a, c, n, by, o, err, errlen) != 0)
        return -1;
    if (o->other_suite != 0) {
        gw_kek_mismatch_msg(err, errlen, o->other_suite, o->other_version);
        return -1;
    }
    return 0;
}

int gw_ctl_keyring_vouch(struct gw_admin *a, const struct gw_keyring *kr, const char *by, char *err,
                         size_t errlen)
{
    struct gw_keyring_check *c = NULL;
    struct gw_kek_check_outcome o;
    size_t n = 0;
    int rc = gw_keyring_kek_checks(kr, &c, &n);

    if (rc != 0) {
        snprintf(err, errlen, "the check values of the keyring's KEKs: %s", gw_err_str(rc));
        return -1;
    }
    rc = gw_ctl_kek_vouch(a, c, n, by, &o, err, errlen);
    gw_free(c);
    return rc;
}
