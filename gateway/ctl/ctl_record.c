/* ctl_record.c: one table from the CLI's admin_log actions to the audit vocabulary, the append
 * through gw_admin_audit (store/audit_ctl.c: chain 'ctl', row lock on its head, checkpoint) and
 * the keyring seed that signs its checkpoints.
 * Invariant: called only inside an open transaction, never with a secret in any field. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_ctl.h"
#include "audit_signer.h"
#include "ctl.h"
#include "ctl_record.h"
#include "keyring.h"

static const struct {
    const char *admin; /* admin_log.action, as the commands name themselves */
    const char *audit; /* audit_record.action */
} actions[] = {
    {"keys.init", "key.init"},
    {"keys.add-suite", "key.add_suite"},
    {"keys.rotate", "key.rotate"},
    {"keys.retire", "key.retire"},
    {"keys.rewrap", "key.rewrap"},
    {"keys.migrate_suite", "key.migrate_suite"},
    {"segments.issue", "segment.issue"},
    {"principals.add", "principal.add"},
    {"principals.disable", "principal.disable"},
    {"accounts.bootstrap", "account.create"},
    {"accounts.create", "account.create"},
    {"accounts.disable", "account.disable"},
    {"accounts.unlock", "account.unlock"},
    {"routes.add", "route.add"},
    {"routes.remove", "route.remove"},
    {"retention.floor", "retention.floor"},
};

static bool suite_chosen;
static enum gw_suite chosen_suite;

void ctl_audit_use_suite(enum gw_suite suite)
{
    suite_chosen = true;
    chosen_suite = suite;
}

const struct gw_sign_key *ctl_audit_key(void)
{
    static struct gw_sign_key key;
    static struct gw_keyring *kr; /* kept for the life of the (short) process */
    static bool tried;
    const char *path = getenv("WAYGATE_KEYRING");
    char err[256];

    if (!tried && path != NULL && path[0] != '\0') {
        tried = true;
        if (gw_keyring_file_load(path, &kr, err, sizeof(err)) != 0) {
            fprintf(stderr,
                    "waygatectl: WAYGATE_KEYRING: %s (audit records go without a signed "
                    "checkpoint)\n",
                    err);
        } else if (suite_chosen && gw_keyring_set_suite(kr, chosen_suite) != 0) {
            fprintf(stderr,
                    "waygatectl: WAYGATE_KEYRING: no keys of the %s suite (audit records go "
                    "without a signed checkpoint)\n",
                    gw_suite_name(chosen_suite));
            gw_keyring_free(kr);
            kr = NULL;
        }
    }
    tried = true;
    return gw_audit_signer(kr, &key) == 0 ? &key : NULL;
}

const char *ctl_record_action(const char *admin_action)
{
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        if (strcmp(actions[i].admin, admin_action) == 0)
            return actions[i].audit;
    return NULL;
}

int ctl_record(struct gw_admin *a, const char *cmd, const char *actor, const char *admin_action,
               const char *object, int64_t count, const char *outcome, const char *detail)
{
    struct gw_audit_rec r;
    int64_t seq = 0;
    char err[512];

    memset(&r, 0, sizeof(r));
    r.action = ctl_record_action(admin_action);
    if (r.action == NULL)
        r.action = admin_action; /* a read (principals.list): recorded as itself */
    r.actor = actor;
    r.peer = "local";
    r.object = object;
    r.count = count;
    r.outcome = outcome;
    r.detail = detail;
    if (gw_admin_audit(a, &r, ctl_audit_key(), &seq, err, sizeof(err)) != 0) {
        fprintf(stderr,
                "waygatectl %s: the audit record could not be written, so nothing was "
                "done: %s\n",
                cmd, err);
        return GW_CTL_FAIL;
    }
    return 0;
}
