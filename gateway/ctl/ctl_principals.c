/* ctl_principals.c: `waygatectl principals add|list|disable`: client certificates registered as
 * principals (name, role, branch, admin flag), known by the SHA-256 of the DER certificate. A
 * certificate of a people's role (gw_account_role_person_only) is registered for administration
 * or not at all.
 * Every run is recorded in admin_log (Art. 31). Adding the same registration again changes
 * nothing and succeeds, so that a deployment script may run it on every start. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "account.h"
#include "ctl.h"
#include "ctl_admin.h"

static const char *const PRINCIPAL_ROLES[] = {
    "courier",        "branch_clerk", "customer_service", "compliance_auditor",
    "security_admin", "system_admin", "lawful_access",    "backend",
};

static void principals_usage(FILE *f)
{
    fprintf(f, "usage: waygatectl principals add NAME --cert FILE.pem --role ROLE [--branch B] "
               "[--admin]\n"
               "       waygatectl principals list\n"
               "       waygatectl principals disable NAME\n"
               "  common options: [--actor WHO] [--db CONNINFO]\n"
               "  ROLE: courier, branch_clerk, customer_service (these three need --branch),\n"
               "  compliance_auditor, security_admin, system_admin, lawful_access, backend.\n"
               "  --admin registers the certificate for administration: accounts of the\n"
               "  administrative roles may log in only over such a certificate, and it acts\n"
               "  only through their tokens. Required for compliance_auditor, security_admin,\n"
               "  system_admin and lawful_access (people's roles, Art. 31).\n"
               "  The certificate is known by the SHA-256 of its DER encoding. Adding a principal\n"
               "  exactly as registered already changes nothing (exit 0). CONNINFO defaults to\n"
               "  $WAYGATE_PGURI; WHO to $USER. Exit: 0 done, 1 failed, 2 usage, 3 refused.\n");
}

static bool role_ok(const char *r)
{
    for (size_t i = 0; i < sizeof(PRINCIPAL_ROLES) / sizeof(PRINCIPAL_ROLES[0]); i++)
        if (strcmp(r, PRINCIPAL_ROLES[i]) == 0)
            return true;
    return false;
}

static bool branch_scoped(const char *r)
{
    return strcmp(r, "courier") == 0 || strcmp(r, "branch_clerk") == 0 ||
           strcmp(r, "customer_service") == 0;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* SHA-256 of the DER encoding of the first certificate in a PEM file. 0 or -1. */
static int cert_fingerprint(const char *path, uint8_t fp[GW_ADMIN_FP_LEN])
{
    unsigned int len = 0;
    X509 *x = NULL;
    BIO *b = BIO_new_file(path, "r");
    int rc = -1;

    if (b == NULL)
        return -1;
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (x != NULL && X509_digest(x, EVP_sha256(), fp, &len) == 1 && len == GW_ADMIN_FP_LEN)
        rc = 0;
    X509_free(x);
    BIO_free(b);
    return rc;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

struct found {
    const struct gw_admin_principal *want;
    int rows;
    bool same;                 /* one row, identical to want, enabled */
    char other[64];            /* the name of the principal holding want's certificate, if other */
    bool name_taken, disabled; /* a principal of want's name exists / is disabled */
};

static bool same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void found_cb(void *arg, const struct gw_admin_principal *p)
{
    struct found *f = arg;
    const struct gw_admin_principal *w = f->want;

    f->rows++;
    if (strcmp(p->name, w->name) == 0) {
        f->name_taken = true;
        f->disabled = p->disabled_at != NULL;
        f->same = memcmp(p->fingerprint, w->fingerprint, GW_ADMIN_FP_LEN) == 0 &&
                  strcmp(p->role, w->role) == 0 && same_text(p->branch, w->branch) &&
                  p->admin == w->admin && p->disabled_at == NULL;
    } else {
        snprintf(f->other, sizeof(f->other), "%s", p->name);
    }
}

static int principals_add(struct ctl_admin *c, const char *name, const char *cert, const char *role,
                          const char *branch, bool admin)
{
    struct gw_admin_principal p;
    struct found f;
    char fphex[2 * GW_ADMIN_FP_LEN + 1], detail[256], err[512];
    long long id = 0;
    int rc;

    if (!name_ok(name))
        return ctl_admin_refuse_text(
            c, NULL, "name", "must be 1 to 63 characters of A-Z, a-z, 0-9, '.', '_' or '-'");
    if (role == NULL || !role_ok(role))
        return ctl_admin_refuse_text(c, name, "role",
                                     "is not a principal role (courier, branch_clerk, "
                                     "customer_service, compliance_auditor, security_admin, "
                                     "system_admin, lawful_access, backend)");
    if (branch_scoped(role) != (branch != NULL))
        return ctl_admin_refuse_text(c, name, "branch",
                                     "is required for courier, branch_clerk and customer_service "
                                     "principals and must be absent for the other roles");
    if (branch != NULL && !gw_branch_code_ok(branch))
        return ctl_admin_refuse_text(c, name, "branch",
                                     "must be 1 to 31 ASCII letters, digits, '_' or '-'");
    if (admin && branch != NULL)
        return ctl_admin_refuse_text(c, name, "admin",
                                     "a certificate registered for administration must not be "
                                     "branch-scoped");
    /* Art. 31, 34: a people's role acts only through an account's token, which names the
     * person; sql/041's CHECK refuses such a row too, and the policy treats it so anyway */
    if (!admin && gw_account_role_person_only(role)) {
        snprintf(err, sizeof(err),
                 "a certificate of the people's role %s must be registered for administration "
                 "(--admin): it acts only through an account's token (Art. 31)",
                 role);
        return ctl_admin_refuse_text(c, name, "admin", err);
    }
    if (cert == NULL)
        return ctl_admin_refuse_text(c, name, "cert", "is required (a PEM certificate file)");
    memset(&p, 0, sizeof(p));
    if (cert_fingerprint(cert, p.fingerprint) != 0)
        return ctl_admin_refuse_text(c, name, "cert", "cannot be read as a PEM X.509 certificate");
    hex(p.fingerprint, GW_ADMIN_FP_LEN, fphex);
    p.name = name;
    p.role = role;
    p.branch = branch;
    p.admin = admin;
    p.created_by = c->actor;
    snprintf(detail, sizeof(detail), "role=%s branch=%s admin=%s sha256=%s", role,
             branch != NULL ? branch : "-", admin ? "yes" : "no", fphex);

    /* the row, its admin_log row and its audit record: one transaction */
    if (ctl_admin_begin(c) != 0)
        return GW_CTL_FAIL;
    rc = gw_admin_principal_add(c->a, &p, &id, err, sizeof(err));
    if (rc == GW_EEXIST) {
        ctl_admin_rollback(c); /* the failed INSERT ended the transaction */
        memset(&f, 0, sizeof(f));
        f.want = &p;
        if (gw_admin_principal_find(c->a, name, p.fingerprint, found_cb, &f, err, sizeof(err)) != 0)
            return ctl_admin_fail(c, name, "the database refused", err);
        if (f.rows == 1 && f.same) {
            printf("principal %s is registered already with this certificate, role, branch and "
                   "admin flag: nothing changed\n",
                   name);
            return ctl_admin_log(c, name, "unchanged", detail) == 0 ? GW_CTL_OK : GW_CTL_FAIL;
        }
        if (f.other[0] != '\0')
            return ctl_admin_refuse_text(c, name, "cert",
                                         "is registered already for another principal");
        return ctl_admin_refuse_text(c, name, "name",
                                     f.disabled
                                         ? "a disabled principal has this name (names are "
                                           "not reused)"
                                         : "a principal with this name is registered with "
                                           "another certificate, role, branch or admin flag");
    }
    if (rc != 0)
        return ctl_admin_fail(c, name, "the database refused", err);
    if (ctl_admin_log(c, name, "ok", detail) != 0 || ctl_admin_commit(c) != 0)
        return GW_CTL_FAIL;
    printf("registered principal %s (id %lld): role %s, branch %s, %s, certificate sha256:%s\n",
           name, id, role, branch != NULL ? branch : "-",
           admin ? "registered for administration" : "not for administration", fphex);
    return GW_CTL_OK;
}

static void list_cb(void *arg, const struct gw_admin_principal *p)
{
    char fphex[2 * GW_ADMIN_FP_LEN + 1];
    struct ctl_esc e = {0};
    size_t *n = arg;

    if ((*n)++ == 0)
        printf("%-16s %-18s %-8s %-5s %-20s %-20s %s\n", "name", "role", "branch", "admin",
               "created_at", "disabled_at", "sha256");
    hex(p->fingerprint, GW_ADMIN_FP_LEN, fphex);
    printf("%-16s %-18s %-8s %-5s %-20s %-20s %s\n", ctl_esc(&e, p->name), ctl_esc(&e, p->role),
           p->branch != NULL ? ctl_esc(&e, p->branch) : "-", p->admin ? "yes" : "no",
           ctl_esc(&e, p->created_at), p->disabled_at != NULL ? ctl_esc(&e, p->disabled_at) : "-",
           fphex);
    ctl_esc_clear(&e);
}

static int principals_list(struct ctl_admin *c)
{
    char err[512], detail[64];
    size_t n = 0;

    if (gw_admin_principal_list(c->a, list_cb, &n, err, sizeof(err)) != 0)
        return ctl_admin_fail(c, NULL, "the database refused", err);
    if (n == 0)
        printf("no principals registered\n");
    snprintf(detail, sizeof(detail), "%zu principals", n);
    return ctl_admin_log(c, NULL, "ok", detail) == 0 ? GW_CTL_OK : GW_CTL_FAIL;
}

static int principals_disable(struct ctl_admin *c, const char *name)
{
    bool already = false;
    char err[512];
    int rc;

    if (ctl_admin_begin(c) != 0)
        return GW_CTL_FAIL;
    rc = gw_admin_principal_disable(c->a, name, c->actor, &already, err, sizeof(err));

    if (rc == GW_ENOTFOUND)
        return ctl_admin_refuse_text(c, name, "name", "no such principal");
    if (rc != 0)
        return ctl_admin_fail(c, name, "the database refused", err);
    if (ctl_admin_log(c, name, already ? "unchanged" : "ok", already ? "disabled before" : NULL) !=
            0 ||
        ctl_admin_commit(c) != 0)
        return GW_CTL_FAIL;
    printf(already ? "principal %s was disabled already: nothing changed\n"
                   : "disabled principal %s: its certificate is refused from its next call\n",
           name);
    return GW_CTL_OK;
}

int gw_ctl_principals(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},   {"cert", required_argument, NULL, 'c'},
        {"role", required_argument, NULL, 'r'}, {"branch", required_argument, NULL, 'b'},
        {"admin", no_argument, NULL, 'A'},      {"actor", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *cert = NULL, *role = NULL, *branch = NULL, *actor = NULL, *name = NULL,
               *verb;
    struct ctl_admin c = {0};
    bool admin = false;
    int ch, rc, nargs;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        principals_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    verb = argv[1];
    optind = 2;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            db = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'b':
            branch = optarg;
            break;
        case 'A':
            admin = true;
            break;
        case 'a':
            actor = optarg;
            break;
        case 'h':
            principals_usage(stdout);
            return GW_CTL_OK;
        default:
            principals_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    nargs = argc - optind;
    if (strcmp(verb, "add") == 0 || strcmp(verb, "disable") == 0) {
        if (nargs != 1) {
            fprintf(stderr, "waygatectl principals %s: give exactly one NAME\n", verb);
            return GW_CTL_USAGE;
        }
        name = argv[optind];
    } else if (strcmp(verb, "list") == 0) {
        if (nargs != 0) {
            fprintf(stderr, "waygatectl principals list: unexpected argument '%s'\n", argv[optind]);
            return GW_CTL_USAGE;
        }
    } else {
        fprintf(stderr, "waygatectl principals: unknown action '%s' (add, list or disable)\n",
                verb);
        principals_usage(stderr);
        return GW_CTL_USAGE;
    }
    if (strcmp(verb, "add") != 0 && (cert != NULL || role != NULL || branch != NULL || admin)) {
        fprintf(stderr,
                "waygatectl principals %s: --cert, --role, --branch and --admin belong to "
                "'add'\n",
                verb);
        return GW_CTL_USAGE;
    }
    rc = ctl_admin_open(&c, "principals", verb, actor, db);
    if (rc != 0)
        return rc;
    if (strcmp(verb, "add") == 0)
        rc = principals_add(&c, name, cert, role, branch, admin);
    else if (strcmp(verb, "disable") == 0)
        rc = principals_disable(&c, name);
    else
        rc = principals_list(&c);
    ctl_admin_close(&c);
    return rc;
}
