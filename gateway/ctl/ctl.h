/* ctl.h: the commands of waygatectl. Each takes its own argc/argv (argv[0] is the command name,
 * so getopt works as usual), writes results to stdout and errors to stderr, and returns the
 * process exit status: 0 success, 1 failure, 2 usage error, 3 refused by a rule. To add a command:
 * declare gw_ctl_<name> here, implement it in gateway/ctl_<name>.c and add one line to the table in
 * gateway/ctl_main.c. */
#ifndef GW_CTL_H
#define GW_CTL_H

#include <stddef.h>

#define GW_CTL_OK 0
#define GW_CTL_FAIL 1
#define GW_CTL_USAGE 2
#define GW_CTL_REFUSED                                                                             \
    3 /* the request breaks a rule (message: field and rule); nothing changed                      \
       */

/* waygatectl migrate [--db CONNINFO]: applies the embedded schema migrations
 * (CONNINFO defaults to $WAYGATE_PGURI). */
int gw_ctl_migrate(int argc, char **argv);

/* waygatectl routes add|list|remove: destination region code -> delivering branch (scope). */
int gw_ctl_routes(int argc, char **argv);
int gw_ctl_retention(int argc, char **argv);

/* waygatectl segments issue|list: the waybill-number segments issued to branches (Art. 18). */
int gw_ctl_segments(int argc, char **argv);

/* waygatectl suspicious list: phone numbers used by different senders (part 12 Art. 7). */
int gw_ctl_suspicious(int argc, char **argv);

/* waygatectl keys init|rotate|retire|status|rewrap: the keyring file and data-key re-wrapping. */
int gw_ctl_keys(int argc, char **argv);

/* Art. 36 (sql/036_kek_version.sql, ctl_kek.c): the check values c[0..n) of a keyring's KEKs
 * compared with the database's, those it lacks registered as brought by `by` (NULL: compared only)
 * into *o. Returns 0, or -1 with err naming the version and the rule (a version whose key is
 * another) or the database's refusal. */
struct gw_admin;
struct gw_keyring;
struct gw_keyring_check;
struct gw_kek_check_outcome;
int gw_ctl_kek_vouch(struct gw_admin *a, const struct gw_keyring_check *c, size_t n, const char *by,
                     struct gw_kek_check_outcome *o, char *err, size_t errlen);
/* The same for every active KEK of kr. */
int gw_ctl_keyring_vouch(struct gw_admin *a, const struct gw_keyring *kr, const char *by, char *err,
                         size_t errlen);

/* waygatectl keys migrate-suite --to SUITE (ctl_migrate_suite.c, reached through gw_ctl_keys;
 * argv[0] is "migrate-suite"): re-seals the stored waybills under another cipher suite. */
int gw_ctl_keys_migrate_suite(int argc, char **argv);

/* waygatectl principals add|list|disable: client certificates registered as principals. */
int gw_ctl_principals(int argc, char **argv);

/* waygatectl accounts bootstrap|create|list|disable: people's accounts (Art. 34, 35, 38). */
int gw_ctl_accounts(int argc, char **argv);

/* waygatectl export trace: names the bulk export a file or fragment of rows came from (Art. 37). */
int gw_ctl_export(int argc, char **argv);
/* waygatectl audit verify|export: the audit chains and audit bundles (Art. 33). */
int gw_ctl_audit(int argc, char **argv);
/* waygatectl report monthly: the monthly regulator report, JSON or CSV (Art. 17, 26, 37). */
int gw_ctl_report(int argc, char **argv);

/* waygatectl incidents list: the security incidents recorded (Art. 17). */
int gw_ctl_incidents(int argc, char **argv);

/* waygatectl outbox status|list-parked|retry ID: the deliveries to the carrier backend. */
int gw_ctl_outbox(int argc, char **argv);

#endif
