/* ctl_admin.h: what `waygatectl principals` and `waygatectl accounts` share (ctl_admin.c): the
 * connection (also for routes, segments, suspicious: ctl_admin_db), the actor, the administrative
 * record of every command (Art. 31), and refusals that name the field and the rule. Internal to the
 * CLI. */
#ifndef GW_CTL_ADMIN_H
#define GW_CTL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl_record.h" /* ctl_audit_key */
#include "err.h"
#include "store_acct_admin.h"

/* One run of an administrative command. */
struct ctl_admin {
    char cmd[32];       /* "principals add": the prefix of every message */
    char action[32];    /* "principals.add": admin_log.action */
    const char *actor;  /* --actor, else $USER, else the login name of the uid */
    struct gw_admin *a; /* NULL until ctl_admin_connect */
    bool txn;           /* a transaction is open (ctl_admin_begin) */
};

/* Escaped copies of text waygatectl did not write itself (a column read from the database, a
 * field of a file it reads, a keyring's or a bundle's text), for stdout and stderr: each
 * ctl_esc(e, s) is gw_text_escape (text.h) of s in a buffer of its own that e owns, so a stored
 * value can neither start a line of its own, nor add a field to a tab-separated line, nor reach
 * the terminal as an escape sequence (OSC 52, cursor moves), nor reorder the text around it.
 * The copies stay valid until ctl_esc_clear(e) (a row's callback clears at its end). Start with
 * struct ctl_esc e = {0}. */
struct ctl_esc_str;
struct ctl_esc {
    struct ctl_esc_str *head;
};

/* s escaped (s NULL: ""); "?" when out of memory, never s itself. */
const char *ctl_esc(struct ctl_esc *e, const char *s);

/* Frees every copy of e; e can be used again. */
void ctl_esc_clear(struct ctl_esc *e);

/* The uid's login name, else "unknown". */
const char *ctl_admin_login_name(void);

/* The actor: opt when given, else $USER, else ctl_admin_login_name(). */
const char *ctl_admin_actor(const char *opt);

/* Refuses the connection string of `waygatectl <cmd>` taken from `source` (the option or the
 * environment variable: "--db", "WAYGATE_PGURI", ...) when it holds a password (conninfo.h: it
 * would show in /proc/PID/cmdline and the shell's history) or is not one libpq parses. Returns 0,
 * or GW_CTL_USAGE after saying why on stderr, naming source and the rule, never the string. */
int ctl_conninfo_check(const char *cmd, const char *source, const char *conninfo);

/* Connects `waygatectl <cmd>` to conninfo (else $WAYGATE_PGURI) into *out. Returns 0;
 * GW_CTL_USAGE when neither names a database or it breaks ctl_conninfo_check; GW_CTL_FAIL when
 * the connection fails (both after saying why on stderr). For the commands that keep no struct
 * ctl_admin. */
int ctl_admin_db(const char *cmd, const char *conninfo, struct gw_admin **out);

/* Connects to conninfo (else $WAYGATE_PGURI). Returns 0, or ctl_admin_db's status after saying
 * why. */
int ctl_admin_connect(struct ctl_admin *c, const char *conninfo);

/* Names the run `<command> <verb>` (action `<command>.<verb>`), sets the actor
 * (ctl_admin_actor(actor)) and connects as ctl_admin_connect (its status). */
int ctl_admin_open(struct ctl_admin *c, const char *command, const char *verb, const char *actor,
                   const char *conninfo);

/* Closes the connection. */
void ctl_admin_close(struct ctl_admin *c);

/* BEGIN / COMMIT on c->a, tracked in c->txn. Return 0, or GW_CTL_FAIL after saying why (a
 * failed COMMIT has rolled back). */
int ctl_admin_begin(struct ctl_admin *c);
int ctl_admin_commit(struct ctl_admin *c);

/* Rolls back the open transaction, if any. */
void ctl_admin_rollback(struct ctl_admin *c);

/* Appends the admin_log row of this command (object, outcome, detail: never a secret) and its
 * audit record (chain 'ctl', ctl_record.h: the audit vocabulary's action for a command that
 * changes something, e.g. principal.add; else the command's own, e.g. principals.list), in the
 * open transaction or, when none is open, in one of their own. Prints a line on failure, rolls
 * back and returns GW_CTL_FAIL (the command must then not report success); 0 when recorded. */
int ctl_admin_log(struct ctl_admin *c, const char *object, const char *outcome, const char *detail);

/* Rolls back an open transaction (nothing of this command is kept), prints "<cmd>: <field>:
 * <rule wording>" (the limit in place for a bounded rule) to stderr, records the refusal (outcome
 * "refused", detail the same words) when connected, and returns GW_CTL_REFUSED. */
int ctl_admin_refuse(struct ctl_admin *c, const char *object, const char *field, enum gw_rule rule,
                     unsigned long limit);

/* Same with a CLI-only wording (no gRPC rule applies). */
int ctl_admin_refuse_text(struct ctl_admin *c, const char *object, const char *field,
                          const char *words);

/* Rolls back an open transaction, prints "<cmd>: <what>: <msg>" and records outcome "failed".
 * Returns GW_CTL_FAIL. */
int ctl_admin_fail(struct ctl_admin *c, const char *object, const char *what, const char *msg);

#endif
