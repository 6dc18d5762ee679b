/* ctl_accounts.c: `waygatectl accounts bootstrap|create|list|disable|unlock`: people's accounts
 * (Art. 34, 35, 38). Passwords are hashed here with scrypt (crypto/password.h) and only the
 * hash, salt and parameters reach the database; a generated one-time password is printed once,
 * alone on stdout, and nowhere else; a given one is read from stdin, never from argv. Every new
 * account must change its password at the first login. Separation of duties (三员) is checked
 * here and again by the database's unique index; a refusal is recorded as an incident. Every
 * run is recorded in admin_log (Art. 31). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "account.h"
#include "ctl.h"
#include "ctl_admin.h"
#include "password.h"
#include "pwpolicy.h"
#include "text.h"

#define DEFAULT_SCRYPT_N 32768
#define PERSON_MAX 64
#define REASON_MAX 200
#define BOOTSTRAP_LOCK "waygate.accounts.bootstrap"

static void accounts_usage(FILE *f)
{
    fprintf(f,
            "usage: waygatectl accounts bootstrap NAME [--person P] [--scrypt-n N]\n"
            "       waygatectl accounts create NAME --role ROLE [--branch B] [--person P]\n"
            "                                     [--password-stdin] [--scrypt-n N]\n"
            "       waygatectl accounts list [NAME]\n"
            "       waygatectl accounts disable NAME --reason TEXT\n"
            "       waygatectl accounts unlock NAME\n"
            "  common options: [--actor WHO] [--db CONNINFO]\n"
            "  bootstrap creates the first security_admin, only while no enabled one exists.\n"
            "  create: ROLE is branch_clerk or customer_service (these need --branch),\n"
            "  compliance_auditor, security_admin, system_admin or lawful_access. One person (P,\n"
            "  default NAME) holds at most one of system_admin, security_admin and\n"
            "  compliance_auditor (separation of duties); a refusal is recorded as an incident.\n"
            "  The initial password is read from the first line of stdin with --password-stdin\n"
            "  (at least 12 characters of three classes, not containing NAME); without it, and\n"
            "  for bootstrap, a one-time password is generated and printed once, alone on stdout.\n"
            "  Either must be changed at the first login (Admin.ChangePassword).\n"
            "  disable takes effect at once: the account's sessions are deleted.\n"
            "  unlock clears the account's failed-login count and its lock (nothing else).\n"
            "  Passwords are hashed with scrypt N (default %d), r 8, p 1. CONNINFO defaults to\n"
            "  $WAYGATE_PGURI; WHO to $USER. Exit: 0 done, 1 failed, 2 usage, 3 refused.\n",
            DEFAULT_SCRYPT_N);
}

/* One byte of stdin by read(2) (no stdio buffer keeps a copy of the password): the byte, or EOF
 * at its end or on an error. */
static int read_byte(void)
{
    unsigned char b;
    ssize_t r;

    do
        r = read(STDIN_FILENO, &b, 1);
    while (r < 0 && errno == EINTR);
    return r == 1 ? b : EOF;
}

/* Reads the first line of stdin (without its "\n" or "\r\n") into buf (cap bytes, NUL added),
 * with the terminal's echo off while it does when stdin is one (restored after, whatever the
 * read gave). Returns its length, or cap when the line does not fit (the caller refuses it as too
 * long and wipes buf). */
static size_t read_password(char *buf, size_t cap)
{
    struct termios saved, quiet;
    bool tty = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &saved) == 0;
    size_t n = 0;
    int ch = EOF;

    if (tty) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL; /* the Enter that ends it still moves to a new line */
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
            tty = false;
    }
    while (n < cap - 1 && (ch = read_byte()) != EOF && ch != '\n')
        buf[n++] = (char)ch;
    buf[n] = '\0';
    if (n == cap - 1 && ch != '\n' && ch != EOF && (ch = read_byte()) != EOF && ch != '\n')
        n = cap;
    else if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    if (tty)
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    return n;
}

/* What the separation-of-duties check found: an admin-role account of the same person. */
struct sod {
    bool found;
    char role[32], name[65];
};

static void sod_cb(void *arg, const struct gw_admin_account *acc)
{
    struct sod *s = arg;

    if (s->found)
        return;
    s->found = true;
    snprintf(s->role, sizeof(s->role), "%s", acc->role);
    snprintf(s->name, sizeof(s->name), "%s", acc->name);
}

/* The refusal of a second administrator role for one person: rolled back, recorded as an
 * incident (Art. 17) and in admin_log. */
static int refuse_sod(struct ctl_admin *c, const char *name, const char *role, const struct sod *s)
{
    char detail[256], err[512];

    ctl_admin_rollback(c);
    if (s != NULL && s->found)
        snprintf(detail, sizeof(detail),
                 "account %s as %s refused: its person holds %s already (account %s)", name, role,
                 s->role, s->name);
    else
        snprintf(detail, sizeof(detail),
                 "account %s as %s refused by the database: its person holds an administrator "
                 "role already",
                 name, role);
    if (gw_admin_incident(c->a, "medium", "separation_of_duties", c->actor, NULL, detail, err,
                          sizeof(err)) != 0)
        fprintf(stderr, "waygatectl %s: could not record the incident: %s\n", c->cmd, err);
    return ctl_admin_refuse(c, name, "role", GW_RULE_SEPARATION_OF_DUTIES, 0);
}

struct newacct {
    const char *name, *role, *branch, *person;
    const char *pw; /* the initial password (given or generated) */
    size_t pwlen;
    bool generated;
    uint64_t scrypt_n;
};

/* Hashes, checks and inserts one account in one transaction, with its admin_log row. */
static int create_account(struct ctl_admin *c, const struct newacct *n, bool bootstrap)
{
    struct gw_admin_account_new row;
    struct gw_pw_params pp = gw_pw_params_default(n->scrypt_n);
    char params[GW_PW_PARAMS_MAX], detail[256], err[512];
    struct sod sod = {0};
    long long id = 0, admins = 0;
    int rc;

    memset(&row, 0, sizeof(row));
    gw_pw_params_format(&pp, params);
    if (gw_pw_salt(row.pw_salt) != 0 ||
        gw_pw_hash(n->pw, n->pwlen, row.pw_salt, &pp, row.pw_hash) != 0) {
        OPENSSL_cleanse(&row, sizeof(row));
        return ctl_admin_fail(c, n->name, "password", "scrypt hashing failed");
    }
    row.name = n->name;
    row.person = n->person;
    row.role = n->role;
    row.branch = n->branch;
    row.pw_params = params;
    row.created_by = c->actor;
    snprintf(detail, sizeof(detail), "role=%s branch=%s person=%s password=%s must_change=yes",
             n->role, n->branch != NULL ? n->branch : "-", n->person,
             n->generated ? "generated" : "given");

    rc = ctl_admin_begin(c);
    if (rc != 0)
        goto out;
    if (bootstrap) {
        if (gw_admin_xact_lock(c->a, BOOTSTRAP_LOCK, err, sizeof(err)) != 0 ||
            gw_admin_account_count_role(c->a, "security_admin", &admins, err, sizeof(err)) != 0) {
            rc = ctl_admin_fail(c, n->name, "the database refused", err);
            goto out;
        }
        if (admins > 0) {
            rc = ctl_admin_refuse_text(c, n->name, "account",
                                       "an enabled security_admin exists already: bootstrap "
                                       "creates only the first one (a security admin creates the "
                                       "others)");
            goto out;
        }
    }
    if (gw_account_role_admin(n->role)) {
        if (gw_admin_account_admin_roles(c->a, n->person, sod_cb, &sod, err, sizeof(err)) != 0) {
            rc = ctl_admin_fail(c, n->name, "the database refused", err);
            goto out;
        }
        if (sod.found) {
            rc = refuse_sod(c, n->name, n->role, &sod);
            goto out;
        }
    }
    rc = gw_admin_account_insert(c->a, &row, &id, err, sizeof(err));
    if (rc == GW_EPERM) {
        rc = refuse_sod(c, n->name, n->role, NULL);
        goto out;
    }
    if (rc == GW_EEXIST) {
        rc = ctl_admin_refuse(c, n->name, "account", GW_RULE_ACCOUNT_EXISTS, 0);
        goto out;
    }
    if (rc != 0) {
        rc = ctl_admin_fail(c, n->name, "the database refused", err);
        goto out;
    }
    if (ctl_admin_log(c, n->name, "ok", detail) != 0 || ctl_admin_commit(c) != 0) {
        rc = GW_CTL_FAIL;
        goto out;
    }
    fprintf(stderr,
            "waygatectl %s: created account %s (id %lld): role %s, branch %s, person %s; the "
            "password must be changed at the first login%s\n",
            c->cmd, n->name, id, n->role, n->branch != NULL ? n->branch : "-", n->person,
            n->generated ? "; its one-time password is on stdout, shown this once" : "");
    if (n->generated) {
        fwrite(n->pw, 1, n->pwlen, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    rc = GW_CTL_OK;
out:
    OPENSSL_cleanse(&row, sizeof(row));
    return rc;
}

static int accounts_create(struct ctl_admin *c, const char *name, const char *role,
                           const char *branch, const char *person, bool pw_stdin, uint64_t scrypt_n,
                           bool bootstrap)
{
    char pw[GW_PWPOLICY_MAX_BYTES + 3]; /* the longest line, its "\r", the NUL */
    struct newacct n = {0};
    struct gw_fault f;
    enum gw_rule rule = GW_RULE_NONE;
    int rc;

    if (gw_account_check(name, role, branch, &f) != 0)
        return ctl_admin_refuse(c, f.rule == GW_RULE_ACCOUNT_NAME ? NULL : name, f.field, f.rule,
                                0);
    if (branch != NULL && branch[0] == '\0')
        branch = NULL;
    if (person == NULL || person[0] == '\0')
        person = name;
    if (gw_text_check(person, strlen(person), PERSON_MAX, NULL, &rule) != 0)
        return ctl_admin_refuse(c, name, "person", rule, rule == GW_RULE_TOO_LONG ? PERSON_MAX : 0);
    if (gw_text_blank(person, strlen(person)))
        return ctl_admin_refuse(c, name, "person", GW_RULE_REQUIRED, 0);

    n.name = name;
    n.role = role;
    n.branch = branch;
    n.person = person;
    n.scrypt_n = scrypt_n;
    if (pw_stdin) {
        n.pwlen = read_password(pw, sizeof(pw));
        if (n.pwlen > GW_PWPOLICY_MAX_BYTES) {
            rc = ctl_admin_refuse(c, name, "password", GW_RULE_TOO_LONG, GW_PWPOLICY_MAX_BYTES);
            goto out;
        }
        if (gw_pwpolicy_check(name, pw, n.pwlen, &f) != 0) {
            rc = ctl_admin_refuse(c, name, "password", f.rule, f.limit);
            goto out;
        }
    } else {
        /* a generated password could contain a short account name: draw again */
        do {
            if (gw_pwpolicy_generate(pw, GW_PWPOLICY_GEN_SIZE) != 0) {
                rc = ctl_admin_fail(c, name, "password", "the random generator failed");
                goto out;
            }
        } while (gw_pwpolicy_check(name, pw, strlen(pw), NULL) != 0);
        n.pwlen = strlen(pw);
        n.generated = true;
    }
    n.pw = pw;
    rc = create_account(c, &n, bootstrap);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc;
}

/* One row per account. The person is free text that reached the table before its rule did, or
 * past it (the owner's role); the other text columns are held by the table's CHECKs to names and
 * codes. All are printed escaped (ctl_esc), never a control character raw. */
static void list_cb(void *arg, const struct gw_admin_account *a)
{
    struct ctl_esc e = {0};
    size_t *n = arg;

    if ((*n)++ == 0)
        printf("%-16s %-18s %-8s %-16s %-11s %-6s %-20s %-20s %s\n", "name", "role", "branch",
               "person", "must_change", "failed", "locked_until", "last_used_at", "disabled_at");
    printf("%-16s %-18s %-8s %-16s %-11s %-6lld %-20s %-20s %s\n", ctl_esc(&e, a->name),
           ctl_esc(&e, a->role), a->branch != NULL ? ctl_esc(&e, a->branch) : "-",
           ctl_esc(&e, a->person), a->must_change ? "yes" : "no", a->failed_count,
           a->locked_until != NULL ? ctl_esc(&e, a->locked_until) : "-",
           a->last_used_at != NULL ? ctl_esc(&e, a->last_used_at) : "-",
           a->disabled_at != NULL ? ctl_esc(&e, a->disabled_at) : "-");
    ctl_esc_clear(&e);
}

static int accounts_list(struct ctl_admin *c, const char *name)
{
    char err[512], detail[64];
    size_t n = 0;

    if (gw_admin_account_list(c->a, name, list_cb, &n, err, sizeof(err)) != 0)
        return ctl_admin_fail(c, name, "the database refused", err);
    if (n == 0 && name != NULL)
        return ctl_admin_refuse(c, name, "account", GW_RULE_ACCOUNT_UNKNOWN, 0);
    if (n == 0)
        printf("no accounts\n");
    snprintf(detail, sizeof(detail), "%zu accounts", n);
    return ctl_admin_log(c, name, "ok", detail) == 0 ? GW_CTL_OK : GW_CTL_FAIL;
}

static int accounts_disable(struct ctl_admin *c, const char *name, const char *reason)
{
    enum gw_rule rule = GW_RULE_NONE;
    long long sessions = 0;
    bool already = false;
    char err[512], detail[REASON_MAX + 64];
    int rc;

    if (reason == NULL || gw_text_blank(reason, strlen(reason)))
        return ctl_admin_refuse(c, name, "reason", GW_RULE_REQUIRED, 0);
    if (gw_text_check(reason, strlen(reason), REASON_MAX, NULL, &rule) != 0)
        return ctl_admin_refuse(c, name, "reason", rule, rule == GW_RULE_TOO_LONG ? REASON_MAX : 0);
    if (ctl_admin_begin(c) != 0)
        return GW_CTL_FAIL;
    rc = gw_admin_account_disable(c->a, name, c->actor, reason, &already, &sessions, err,
                                  sizeof(err));
    if (rc == GW_ENOTFOUND)
        return ctl_admin_refuse(c, name, "account", GW_RULE_ACCOUNT_UNKNOWN, 0);
    if (rc == GW_EPRECOND)
        return ctl_admin_refuse(c, name, "account", GW_RULE_LAST_SECURITY_ADMIN, 0);
    if (rc != 0)
        return ctl_admin_fail(c, name, "the database refused", err);
    snprintf(detail, sizeof(detail), "%s; %lld sessions ended; reason: %s",
             already ? "disabled before" : "disabled", sessions, reason);
    if (ctl_admin_log(c, name, already ? "unchanged" : "ok", detail) != 0 ||
        ctl_admin_commit(c) != 0)
        return GW_CTL_FAIL;
    printf("%s account %s; %lld sessions ended: its tokens fail from their next call\n",
           already ? "already disabled:" : "disabled", name, sessions);
    return GW_CTL_OK;
}

/* Clears the failed-login count and the lock, with the admin_log row and the audit record
 * (account.unlock) in the same transaction. */
static int accounts_unlock(struct ctl_admin *c, const char *name)
{
    struct gw_admin_unlock was;
    char err[512], detail[160];
    bool changed;
    int rc;

    if (ctl_admin_begin(c) != 0)
        return GW_CTL_FAIL;
    rc = gw_admin_account_unlock(c->a, name, &was, err, sizeof(err));
    if (rc == GW_ENOTFOUND)
        return ctl_admin_refuse(c, name, "account", GW_RULE_ACCOUNT_UNKNOWN, 0);
    if (rc != 0)
        return ctl_admin_fail(c, name, "the database refused", err);
    changed = was.locked || was.failed_count > 0;
    if (was.locked)
        snprintf(detail, sizeof(detail), "was locked until %s after %lld failed logins%s",
                 was.locked_until, was.failed_count, was.disabled ? "; stays disabled" : "");
    else
        snprintf(detail, sizeof(detail), "was not locked; %lld failed logins counted%s",
                 was.failed_count, was.disabled ? "; stays disabled" : "");
    if (ctl_admin_log(c, name, changed ? "ok" : "unchanged", detail) != 0 ||
        ctl_admin_commit(c) != 0)
        return GW_CTL_FAIL;
    printf("%s account %s: %s\n", changed ? "unlocked" : "nothing to unlock:", name, detail);
    return GW_CTL_OK;
}

static int parse_scrypt_n(const char *s, uint64_t *out)
{
    struct gw_pw_params pp, back;
    char text[GW_PW_PARAMS_MAX], *end = NULL;
    unsigned long long v;

    if (s == NULL) {
        *out = DEFAULT_SCRYPT_N;
        return 0;
    }
    v = strtoull(s, &end, 10);
    if (end == s || *end != '\0')
        return -1;
    pp = gw_pw_params_default(v);
    gw_pw_params_format(&pp, text);
    if (gw_pw_params_parse(text, &back) != 0)
        return -1;
    *out = v;
    return 0;
}

int gw_ctl_accounts(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},       {"role", required_argument, NULL, 'r'},
        {"branch", required_argument, NULL, 'b'},   {"person", required_argument, NULL, 'p'},
        {"password-stdin", no_argument, NULL, 'P'}, {"reason", required_argument, NULL, 'R'},
        {"actor", required_argument, NULL, 'a'},    {"scrypt-n", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *role = NULL, *branch = NULL, *person = NULL, *reason = NULL,
               *actor = NULL, *scrypt_s = NULL, *name = NULL, *verb;
    struct ctl_admin c = {0};
    bool pw_stdin = false, is_list;
    uint64_t scrypt_n = 0;
    int ch, rc, nargs;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        accounts_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    verb = argv[1];
    optind = 2;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            db = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'b':
            branch = optarg;
            break;
        case 'p':
            person = optarg;
            break;
        case 'P':
            pw_stdin = true;
            break;
        case 'R':
            reason = optarg;
            break;
        case 'a':
            actor = optarg;
            break;
        case 'n':
            scrypt_s = optarg;
            break;
        case 'h':
            accounts_usage(stdout);
            return GW_CTL_OK;
        default:
            accounts_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    nargs = argc - optind;
    is_list = strcmp(verb, "list") == 0;
    if (!is_list && strcmp(verb, "bootstrap") != 0 && strcmp(verb, "create") != 0 &&
        strcmp(verb, "disable") != 0 && strcmp(verb, "unlock") != 0) {
        fprintf(stderr,
                "waygatectl accounts: unknown action '%s' (bootstrap, create, list, disable or "
                "unlock)\n",
                verb);
        accounts_usage(stderr);
        return GW_CTL_USAGE;
    }
    if (is_list ? nargs > 1 : nargs != 1) {
        fprintf(stderr, "waygatectl accounts %s: give %s\n", verb,
                is_list ? "at most one NAME" : "exactly one NAME");
        return GW_CTL_USAGE;
    }
    if (nargs == 1)
        name = argv[optind];
    if ((strcmp(verb, "create") != 0 && (role != NULL || branch != NULL || pw_stdin)) ||
        (strcmp(verb, "create") != 0 && strcmp(verb, "bootstrap") != 0 &&
         (person != NULL || scrypt_s != NULL)) ||
        (strcmp(verb, "disable") != 0 && reason != NULL)) {
        fprintf(stderr,
                "waygatectl accounts %s: an option of another action was given (see "
                "--help)\n",
                verb);
        return GW_CTL_USAGE;
    }
    if (parse_scrypt_n(scrypt_s, &scrypt_n) != 0) {
        fprintf(stderr,
                "waygatectl accounts %s: --scrypt-n must be a power of two from 1024 "
                "to 1048576\n",
                verb);
        return GW_CTL_USAGE;
    }
    rc = ctl_admin_open(&c, "accounts", verb, actor, db);
    if (rc != 0)
        return rc;
    if (strcmp(verb, "bootstrap") == 0)
        rc = accounts_create(&c, name, "security_admin", NULL, person, false, scrypt_n, true);
    else if (strcmp(verb, "create") == 0)
        rc = accounts_create(&c, name, role, branch, person, pw_stdin, scrypt_n, false);
    else if (strcmp(verb, "disable") == 0)
        rc = accounts_disable(&c, name, reason);
    else if (strcmp(verb, "unlock") == 0)
        rc = accounts_unlock(&c, name);
    else
        rc = accounts_list(&c, name);
    ctl_admin_close(&c);
    return rc;
}
