/* ctl_admin.c: the shared part of `waygatectl principals` and `accounts` (ctl_admin.h): the
 * connection, the actor, and the admin_log row every command writes (Art. 31), refusals
 * included. Messages name the field and the rule, never a value given for a secret. */
#include "ctl_admin.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "conninfo.h"
#include "ctl.h"
#include "ctl_record.h"
#include "text.h"

struct ctl_esc_str {
    struct ctl_esc_str *next;
    char s[];
};

const char *ctl_esc(struct ctl_esc *e, const char *s)
{
    struct ctl_esc_str *x;
    size_t n, need;

    if (s == NULL)
        return "";
    n = strlen(s);
    need = 4 * n + 1; /* gw_text_escape writes at most 4 n bytes */
    if (n > (SIZE_MAX - sizeof(*x) - 1) / 4 || (x = gw_malloc(sizeof(*x) + need)) == NULL)
        return "?";
    (void)gw_text_escape(x->s, need, s, n);
    x->next = e->head;
    e->head = x;
    return x->s;
}

void ctl_esc_clear(struct ctl_esc *e)
{
    while (e->head != NULL) {
        struct ctl_esc_str *x = e->head;
        e->head = x->next;
        gw_free(x);
    }
}

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

int ctl_conninfo_check(const char *cmd, const char *source, const char *conninfo)
{
    switch (gw_conninfo_check(conninfo)) {
    case GW_CONNINFO_OK:
    case GW_CONNINFO_DBNAME: /* a bare database name: libpq expands it, it holds no password */
        return 0;
    case GW_CONNINFO_PASSWORD:
        fprintf(stderr,
                "waygatectl %s: %s: must not contain a password (password=, sslpassword=, "
                "user:password@ or ?password= of a URI): every local user sees it in the process "
                "list and it stays in the shell's history; put it in a passfile (passfile=, "
                "PGPASSFILE or ~/.pgpass) or use peer or certificate authentication\n",
                cmd, source);
        return GW_CTL_USAGE;
    case GW_CONNINFO_INVALID:
    default:
        fprintf(stderr, "waygatectl %s: %s: not a valid libpq connection string or URI\n", cmd,
                source);
        return GW_CTL_USAGE;
    }
}

int ctl_admin_db(const char *cmd, const char *conninfo, struct gw_admin **out)
{
    const char *source = "--db";
    char err[512];
    int rc;

    *out = NULL;
    if (conninfo == NULL) {
        conninfo = getenv("WAYGATE_PGURI");
        source = "WAYGATE_PGURI";
    }
    if (conninfo == NULL || conninfo[0] == '\0') {
        fprintf(stderr, "waygatectl %s: no database: give --db CONNINFO or set WAYGATE_PGURI\n",
                cmd);
        return GW_CTL_USAGE;
    }
    rc = ctl_conninfo_check(cmd, source, conninfo);
    if (rc != 0)
        return rc;
    if (gw_admin_connect(conninfo, out, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl %s: %s\n", cmd, err);
        return GW_CTL_FAIL;
    }
    return 0;
}

int ctl_admin_connect(struct ctl_admin *c, const char *conninfo)
{
    return ctl_admin_db(c->cmd, conninfo, &c->a);
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

/* The admin_log row and the command's audit record (ctl_record.c: the audit vocabulary's action
 * for a command that changes something, else the command's own), in the command's transaction;
 * when none is open (a refusal or failure, rolled back already; a read), in one of their own. */
int ctl_admin_log(struct ctl_admin *c, const char *object, const char *outcome, const char *detail)
{
    struct gw_admin_logrec r = {c->actor, c->action, object, outcome, detail};
    bool own = false;
    char err[512];

    if (c->a == NULL)
        return GW_CTL_FAIL;
    if (!c->txn) {
        if (ctl_admin_begin(c) != 0)
            return GW_CTL_FAIL;
        own = true;
    }
    if (gw_admin_log(c->a, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl %s: could not record the administrative action: %s\n", c->cmd,
                err);
        ctl_admin_rollback(c);
        return GW_CTL_FAIL;
    }
    if (ctl_record(c->a, c->cmd, c->actor, c->action, object, -1, outcome, detail) != 0) {
        ctl_admin_rollback(c);
        return GW_CTL_FAIL;
    }
    if (own && ctl_admin_commit(c) != 0)
        return GW_CTL_FAIL;
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
