/* ctl_admin.c: the shared part of `waygatectl principals` and `accounts` (ctl_admin.h): the
 * connection, the actor, and the admin_log row every command writes (Art. 31), refusals
 * included. Messages name the field and the rule, never a value given for a secret. */
#include "ctl_admin.h"

#include "audit_ctl.h"
#include "keyring.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_ctl.h"
#include "ctl.h"
#include "keyring.h"

const char *ctl_admin_login_name(void)
{
    const struct passwd *pw = getpwuid(getuid());

    return pw != NULL ? pw->pw_name : "unknown";
}

const char *ctl_admin_actor(const char *opt)
{
    const char *u;

    if (opt != NULL && opt[0] != '\0')
        return opt;
    u = getenv("USER");
    if (u != NULL && u[0] != '\0')
        return u;
    return ctl_admin_login_name();
}

int ctl_admin_db(const char *cmd, const char *conninfo, struct gw_admin **out)
{
    char err[512];

    *out = NULL;
    if (conninfo == NULL)
        conninfo = getenv("WAYGATE_PGURI");
    if (conninfo == NULL || conninfo[0] == '\0') {
        fprintf(stderr, "waygatectl %s: no database: give --db CONNINFO or set WAYGATE_PGURI\n",
                cmd);
        return GW_CTL_USAGE;
    }
    if (gw_admin_connect(conninfo, out, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl %s: %s\n", cmd, err);
        return GW_CTL_FAIL;
    }
    return 0;
}

int ctl_admin_connect(struct ctl_admin *c, const char *conninfo)
{
    return ctl_admin_db(c->cmd, conninfo, &c->a) != 0 ? GW_CTL_FAIL : 0;
}

int ctl_admin_open(struct ctl_admin *c, const char *command, const char *verb, const char *actor,
                   const char *conninfo)
{
    snprintf(c->cmd, sizeof(c->cmd), "%s %s", command, verb);
    snprintf(c->action, sizeof(c->action), "%s.%s", command, verb);
    c->actor = ctl_admin_actor(actor);
    return ctl_admin_connect(c, conninfo);
}

void ctl_admin_close(struct ctl_admin *c)
{
    ctl_admin_rollback(c);
    gw_admin_free(c->a);
    c->a = NULL;
}

int ctl_admin_begin(struct ctl_admin *c)
{
    char err[512];

    if (gw_admin_begin(c->a, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl %s: the database refused BEGIN: %s\n", c->cmd, err);
        return GW_CTL_FAIL;
    }
    c->txn = true;
    return 0;
}

int ctl_admin_commit(struct ctl_admin *c)
{
    char err[512];

    c->txn = false;
    if (gw_admin_commit(c->a, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl %s: the database refused COMMIT (nothing changed): %s\n",
                c->cmd, err);
        return GW_CTL_FAIL;
    }
    return 0;
}

void ctl_admin_rollback(struct ctl_admin *c)
{
    if (c->a != NULL && c->txn)
        gw_admin_rollback(c->a);
    c->txn = false;
}

const uint8_t *ctl_audit_seed(void)
{
    static struct gw_keyring *kr; /* kept for the life of the (short) process */
    static bool tried;
    const char *path = getenv("WAYGATE_KEYRING");
    char err[256];

    if (!tried && path != NULL && path[0] != '\0') {
        tried = true;
        if (gw_keyring_file_load(path, &kr, err, sizeof(err)) != 0)
            fprintf(stderr,
                    "waygatectl: WAYGATE_KEYRING: %s (audit records go without a signed "
                    "checkpoint)\n",
                    err);
    }
    tried = true;
    return kr ? gw_keyring_audit_seed(kr) : NULL;
}

int ctl_admin_log(struct ctl_admin *c, const char *object, const char *outcome, const char *detail)
{
    struct gw_admin_logrec r = {c->actor, c->action, object, outcome, detail};
    struct gw_audit_rec ar = {.actor = c->actor,
                              .peer = "local",
                              .action = c->action,
                              .object = object,
                              .count = -1,
                              .outcome = outcome,
                              .detail = detail};
    char err[512];

    if (c->a == NULL)
        return GW_CTL_FAIL;
    if (gw_admin_log(c->a, &r, err, sizeof(err)) != 0 ||
        gw_admin_audit(c->a, &ar, ctl_audit_seed(), NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl %s: could not record the administrative action: %s\n", c->cmd,
                err);
        return GW_CTL_FAIL;
    }
    return 0;
}

int ctl_admin_refuse_text(struct ctl_admin *c, const char *object, const char *field,
                          const char *words)
{
    char msg[400];

    ctl_admin_rollback(c);
    snprintf(msg, sizeof(msg), "%s: %s", field, words);
    fprintf(stderr, "waygatectl %s: %s\n", c->cmd, msg);
    if (c->a != NULL)
        (void)ctl_admin_log(c, object, "refused", msg);
    return GW_CTL_REFUSED;
}

int ctl_admin_refuse(struct ctl_admin *c, const char *object, const char *field, enum gw_rule rule,
                     unsigned long limit)
{
    struct gw_fault f;
    char msg[400];

    ctl_admin_rollback(c);
    (void)gw_fault_set(&f, GW_EINVAL, NULL, field, rule);
    f.limit = limit;
    gw_fault_format(&f, msg, sizeof(msg));
    fprintf(stderr, "waygatectl %s: %s\n", c->cmd, msg);
    if (c->a != NULL)
        (void)ctl_admin_log(c, object, "refused", msg);
    return GW_CTL_REFUSED;
}

int ctl_admin_fail(struct ctl_admin *c, const char *object, const char *what, const char *msg)
{
    char detail[400];

    ctl_admin_rollback(c);
    snprintf(detail, sizeof(detail), "%s: %s", what, msg);
    fprintf(stderr, "waygatectl %s: %s\n", c->cmd, detail);
    if (c->a != NULL)
        (void)ctl_admin_log(c, object, "failed", detail);
    return GW_CTL_FAIL;
}
