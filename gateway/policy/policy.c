/* policy.c: the built-in method rules of docs/roles.md (Art. 34) and the checks over a policy
 * (who may call what, which records a principal sees, how each role sees each field, which keys
 * it may search by, what it may reveal, its limits); the file's part is filled by policy_file.c.
 * Invariants: deny by default everywhere (no rule, unknown role, empty scope: refused); a rule
 * names roles only from gw_policy_roles; a policy does not change once made. */
#include "policy.h"

#include <stdio.h>
#include <string.h>

#include "account.h"
#include "alloc.h"
#include "policy_int.h"

const char *const gw_policy_roles[] = {
    "courier",
    "branch_clerk",
    "customer_service",
    "compliance_auditor",
    "security_admin",
    "system_admin",
    "lawful_access",
    "backend",
    NULL,
};

_Static_assert(sizeof(gw_policy_roles) / sizeof(gw_policy_roles[0]) == GW_POLICY_NROLES + 1,
               "GW_POLICY_NROLES counts gw_policy_roles");

static const char *const couriers[] = {"courier", NULL};
/* Get: the courier looks a waybill up by number to deliver it, the clerk its branch's
 * waybills, customer service within its scope (docs/roles.md). It also serves lawful_access: the
 * records of its approved, unexpired cases in clear, and nothing else (api_lawful_read.c; the
 * database shows it no other row, Art. 16). */
static const char *const getters[] = {"courier", "branch_clerk", "customer_service",
                                      "lawful_access", NULL};
static const char *const searchers[] = {"branch_clerk", "customer_service", NULL};
static const char *const revealers[] = {"courier", "branch_clerk", "customer_service", NULL};
static const char *const bulk[] = {"security_admin", "compliance_auditor", NULL};
static const char *const auditors[] = {"compliance_auditor", NULL};
static const char *const lawful[] = {"lawful_access", NULL};
static const char *const secadmin[] = {"security_admin", NULL};
/* GetLawfulCase: the roles that may request a case or decide one (Art. 16). */
static const char *const lawful_case[] = {"lawful_access", "security_admin", NULL};

#define ROLES(path, roles)                                                                         \
    {                                                                                              \
        path, GW_POLICY_ROLES, roles                                                               \
    }

/* Method permissions (docs/roles.md). Art. 34: least privilege; the three administrator
 * roles hold disjoint powers. */
static const struct gw_policy_method builtin[] = {
    {"/grpc.health.v1.Health/Check", GW_POLICY_ANYONE, NULL},
    {"/grpc.health.v1.Health/Watch", GW_POLICY_ANYONE, NULL},

    ROLES("/waygate.v1.WaybillIntake/Submit", couriers),
    ROLES("/waygate.v1.WaybillIntake/SubmitBatch", couriers),
    ROLES("/waygate.v1.WaybillIntake/RecordScan", couriers),

    ROLES("/waygate.v1.WaybillQuery/Get", getters),
    ROLES("/waygate.v1.WaybillQuery/Search", searchers),
    ROLES("/waygate.v1.WaybillQuery/Reveal", revealers),

    ROLES("/waygate.v1.Compliance/RequestBulk", bulk),
    ROLES("/waygate.v1.Compliance/ApproveBulk", bulk),
    ROLES("/waygate.v1.Compliance/GetBulk", bulk), /* who may request or approve one */
    ROLES("/waygate.v1.Compliance/RunBulk", bulk),
    ROLES("/waygate.v1.Compliance/ExportAudit", auditors),
    ROLES("/waygate.v1.Compliance/Report", auditors),
    ROLES("/waygate.v1.Compliance/RequestLawfulAccess", lawful),
    ROLES("/waygate.v1.Compliance/DecideLawfulAccess", secadmin),
    ROLES("/waygate.v1.Compliance/GetLawfulCase", lawful_case), /* who may request or decide */

    {"/waygate.v1.Admin/Login", GW_POLICY_AUTHENTICATED, NULL},
    {"/waygate.v1.Admin/ChangePassword", GW_POLICY_AUTHENTICATED, NULL},
    ROLES("/waygate.v1.Admin/CreateAccount", secadmin),
    ROLES("/waygate.v1.Admin/DisableAccount", secadmin),
    ROLES("/waygate.v1.Admin/IssueSegment", secadmin),
    ROLES("/waygate.v1.Admin/RotateKey", secadmin),
};

int gw_policy_role_index(const char *role)
{
    if (role == NULL)
        return -1;
    for (int i = 0; gw_policy_roles[i] != NULL; i++)
        if (strcmp(gw_policy_roles[i], role) == 0)
            return i;
    return -1;
}

bool gw_policy_confidential_role(const char *role)
{
    return role != NULL && strcmp(role, "lawful_access") == 0;
}

struct gw_policy *gw_policy_alloc(const struct gw_policy_method *extra, size_t n)
{
    struct gw_policy *p = gw_calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->refs = 1;
    p->extra = extra;
    p->nextra = extra != NULL ? n : 0;
    for (size_t i = 0; i < GW_POLICY_NROLES; i++)
        p->level[i] = GW_POLICY_LEVEL_NONE;
    return p;
}

const struct gw_policy *gw_policy_ref(const struct gw_policy *p)
{
    if (p != NULL)
        ((struct gw_policy *)p)->refs++; /* the count is bookkeeping, not the policy */
    return p;
}

void gw_policy_unref(const struct gw_policy *p)
{
    struct gw_policy *q = (struct gw_policy *)p;

    if (q == NULL || --q->refs > 0)
        return;
    gw_free(q);
}

void gw_policy_free(struct gw_policy *p)
{
    gw_policy_unref(p);
}

const struct gw_policy_method *gw_policy_method_rule(const struct gw_policy *pol, const char *path)
{
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
        if (strcmp(builtin[i].path, path) == 0)
            return &builtin[i];
    for (size_t i = 0; i < pol->nextra; i++)
        if (strcmp(pol->extra[i].path, path) == 0)
            return &pol->extra[i];
    return NULL;
}

static bool known_role(const char *role)
{
    return gw_policy_role_index(role) >= 0;
}

int gw_policy_may_call(const struct gw_policy *pol, const char *path, const struct gw_principal *p,
                       struct gw_fault *f)
{
    const struct gw_policy_method *m = gw_policy_method_rule(pol, path);
    char field[64];

    gw_fault_clear(f);
    if (m != NULL && m->access == GW_POLICY_ANYONE)
        return 0;
    if (!gw_principal_authenticated(p))
        return gw_fault_set(f, GW_EAUTH, NULL, NULL, GW_RULE_CERT_REQUIRED);
    /* Art. 35: an initial or expired password is changed before anything else is allowed. */
    if (p->authn == GW_AUTHN_TOKEN && p->must_change &&
        strcmp(path, "/waygate.v1.Admin/ChangePassword") != 0)
        return gw_fault_set(f, GW_EPRECOND, NULL, "authorization", GW_RULE_PASSWORD_MUST_CHANGE);
    /* Art. 31, 34: every administrative act names a person. A certificate registered for
     * administration is only a channel for people's accounts: without a token it reaches what
     * any authenticated caller may (Login, ChangePassword), never what its own role allows. A
     * certificate of a people's role is one whatever its flag says (the CLI and sql/041 refuse
     * it unflagged; this holds should a row escape them). */
    if (p->authn == GW_AUTHN_CERT && (p->cert_admin || gw_account_role_person_only(p->role)) &&
        (m == NULL || m->access != GW_POLICY_AUTHENTICATED))
        return gw_fault_set(f, GW_EPERM, NULL, "authorization", GW_RULE_ADMIN_CERT_NEEDS_TOKEN);
    if (m != NULL && known_role(p->role)) {
        if (m->access == GW_POLICY_AUTHENTICATED)
            return 0;
        for (const char *const *r = m->roles; r != NULL && *r; r++)
            if (strcmp(*r, p->role) == 0)
                return 0;
    }
    /* No rule, an unknown role, or a role the rule does not list: deny by default. */
    snprintf(field, sizeof(field), "role %s", p->role[0] ? p->role : "(none)");
    return gw_fault_set(f, GW_EPERM, NULL, field, GW_RULE_ROLE_DENIED);
}

/* The one level check of every scope: p's role is listed in [levels] and level is at most its
 * value. */
static bool within_level(const struct gw_policy *pol, const struct gw_principal *p, int level)
{
    int r = gw_policy_role_index(p->role);

    return r >= 0 && pol->level[r] != GW_POLICY_LEVEL_NONE && level >= 0 && level <= pol->level[r];
}

static bool branch_is(const struct gw_principal *p, const char *branch)
{
    return branch != NULL && strcmp(p->branch, branch) == 0;
}

bool gw_policy_in_scope(const struct gw_policy *pol, const struct gw_principal *p,
                        const struct gw_policy_record *rec)
{
    if (!within_level(pol, p, rec->security_level))
        return false;
    /* Every role that reads waybills is branch-scoped; a principal without a branch sees
     * nothing rather than everything. */
    if (p->branch[0] == '\0')
        return false;
    return branch_is(p, rec->origin_branch) || branch_is(p, rec->custody_branch) ||
           branch_is(p, rec->dest_branch);
}

bool gw_policy_may_reveal_here(const struct gw_policy *pol, const struct gw_principal *p,
                               const struct gw_policy_record *rec, enum gw_col col)
{
    bool dest = branch_is(p, rec->dest_branch);
    bool delivering = rec->custodian_delivers && branch_is(p, rec->custody_branch);

    (void)pol;
    if (p->branch[0] == '\0')
        return false;
    if (strcmp(p->role, "courier") == 0)
        return dest || delivering;
    if (dest || branch_is(p, rec->origin_branch))
        return true;
    return delivering && col == GW_COL_RECIPIENT_PHONE;
}

bool gw_policy_in_bulk_scope(const struct gw_policy *pol, const struct gw_principal *p,
                             const struct gw_policy_record *rec)
{
    if (p->branch[0] != '\0')
        return gw_policy_in_scope(pol, p, rec);
    return within_level(pol, p, rec->security_level);
}

bool gw_policy_in_lawful_scope(const struct gw_policy *pol, const struct gw_principal *p,
                               const struct gw_policy_record *rec)
{
    return within_level(pol, p, rec->security_level);
}

enum gw_view_mode gw_policy_view(const struct gw_policy *pol, const char *role, enum gw_col col)
{
    int r = gw_policy_role_index(role);

    if (r < 0 || (unsigned)col >= GW_COL_COUNT)
        return GW_VIEW_OMIT;
    return (enum gw_view_mode)pol->view[r][col];
}

void gw_policy_view_modes(const struct gw_policy *pol, const char *role,
                          enum gw_view_mode modes[GW_COL_COUNT])
{
    int r = gw_policy_role_index(role);

    for (size_t c = 0; c < GW_COL_COUNT; c++)
        modes[c] = r < 0 ? GW_VIEW_OMIT : (enum gw_view_mode)pol->view[r][c];
}

/* What personal data each field is (docs/policy.md, "Ceilings"). Art. 3: every field of a
 * waybill is delivery user information, so every field is personal; they differ in how much. */
enum pii_kind {
    PII_IDENTITY = 0, /* names a person or reaches one: name, phone, ID number */
    PII_REGION,       /* province, city, district: what a masked address keeps */
    PII_OTHER,        /* the rest of an address, company, ID type, gender, number, time, item */
};

static const unsigned char pii_kind_of[GW_COL_COUNT] = {
    [GW_COL_WAYBILL_NO] = PII_OTHER,
    [GW_COL_ITEM_DESCRIPTION] = PII_OTHER,
    [GW_COL_PICKUP_TIME] = PII_OTHER,
    [GW_COL_SENDER_NAME] = PII_IDENTITY,
    [GW_COL_SENDER_PHONE] = PII_IDENTITY,
    [GW_COL_SENDER_PROVINCE] = PII_REGION,
    [GW_COL_SENDER_CITY] = PII_REGION,
    [GW_COL_SENDER_DISTRICT] = PII_REGION,
    [GW_COL_SENDER_ADDRESS_DETAIL] = PII_OTHER,
    [GW_COL_SENDER_COMPANY] = PII_OTHER,
    [GW_COL_SENDER_ID_TYPE] = PII_OTHER,
    [GW_COL_SENDER_ID_NUMBER] = PII_IDENTITY,
    [GW_COL_SENDER_GENDER] = PII_OTHER,
    [GW_COL_RECIPIENT_NAME] = PII_IDENTITY,
    [GW_COL_RECIPIENT_PHONE] = PII_IDENTITY,
    [GW_COL_RECIPIENT_PROVINCE] = PII_REGION,
    [GW_COL_RECIPIENT_CITY] = PII_REGION,
    [GW_COL_RECIPIENT_DISTRICT] = PII_REGION,
    [GW_COL_RECIPIENT_ADDRESS_DETAIL] = PII_OTHER,
    [GW_COL_RECIPIENT_COMPANY] = PII_OTHER,
    [GW_COL_RECIPIENT_ID_TYPE] = PII_OTHER,
    [GW_COL_RECIPIENT_ID_NUMBER] = PII_IDENTITY,
    [GW_COL_RECIPIENT_GENDER] = PII_OTHER,
};

/* The most a view may grant each role (Art. 34): the modes allowed per kind of field, as
 * bits of enum gw_view_mode, and the rule a refusal names. A role not listed (lawful_access,
 * served by its own path; backend, configurable) has no ceiling here. */
#define M(mode) (1u << (mode))
#define NOT_CLEAR (M(GW_VIEW_OMIT) | M(GW_VIEW_MASK) | M(GW_VIEW_TOKEN))
#define ANY (NOT_CLEAR | M(GW_VIEW_CLEAR))
#define BRANCH_RULE "names, phones and ID numbers only mask, token or omit (clear only by Reveal)"
#define ADMIN_RULE "no personal field clear but province, city and district"
static const struct {
    const char *role;
    unsigned char allowed[3]; /* by enum pii_kind */
    const char *rule;
} ceilings[] = {
    {"courier", {NOT_CLEAR, ANY, ANY}, BRANCH_RULE},
    {"branch_clerk", {NOT_CLEAR, ANY, ANY}, BRANCH_RULE},
    {"customer_service", {NOT_CLEAR, ANY, ANY}, BRANCH_RULE},
    {"compliance_auditor", {NOT_CLEAR, ANY, NOT_CLEAR}, ADMIN_RULE},
    {"security_admin", {NOT_CLEAR, ANY, NOT_CLEAR}, ADMIN_RULE},
    {"system_admin",
     {M(GW_VIEW_OMIT), M(GW_VIEW_OMIT), M(GW_VIEW_OMIT)},
     "no personal data at all (omit only)"},
};
#undef ADMIN_RULE
#undef BRANCH_RULE
#undef ANY
#undef NOT_CLEAR
#undef M

const char *gw_policy_view_ceiling(const char *role, enum gw_col col, enum gw_view_mode mode)
{
    if (role == NULL || (unsigned)col >= GW_COL_COUNT || (unsigned)mode > GW_VIEW_TOKEN)
        return "unknown role, field or mode";
    for (size_t i = 0; i < sizeof(ceilings) / sizeof(ceilings[0]); i++)
        if (strcmp(ceilings[i].role, role) == 0)
            return (ceilings[i].allowed[pii_kind_of[col]] & (1u << mode)) != 0 ? NULL
                                                                               : ceilings[i].rule;
    return NULL;
}

bool gw_policy_may_reveal(const struct gw_policy *pol, const char *role, enum gw_col col)
{
    int r = gw_policy_role_index(role);

    return r >= 0 && (unsigned)col < GW_COL_COUNT && pol->reveal[r][col];
}

const char *const gw_policy_search_keys[GW_POLICY_SEARCH_NKEYS] = {
    [GW_POLICY_SEARCH_PHONE] = "phone",
    [GW_POLICY_SEARCH_ID_NUMBER] = "id_number",
    [GW_POLICY_SEARCH_WAYBILL_NO] = "waybill_no",
    [GW_POLICY_SEARCH_PICKUP_DAY] = "pickup_day",
};

static bool in_search_keys(const struct gw_policy *pol, const char *role,
                           enum gw_policy_search_key key)
{
    int r = gw_policy_role_index(role);

    return r >= 0 && (unsigned)key < GW_POLICY_SEARCH_NKEYS && pol->search[r][key];
}

bool gw_policy_may_search_by(const struct gw_policy *pol, const char *role,
                             enum gw_policy_search_key key)
{
    if (key == GW_POLICY_SEARCH_PHONE || key == GW_POLICY_SEARCH_ID_NUMBER)
        return gw_policy_search_sides(pol, role, key) != 0;
    return in_search_keys(pol, role, key);
}

unsigned gw_policy_search_sides(const struct gw_policy *pol, const char *role,
                                enum gw_policy_search_key key)
{
    enum gw_col sender, recipient;
    unsigned sides = 0;

    if (key == GW_POLICY_SEARCH_PHONE) {
        sender = GW_COL_SENDER_PHONE;
        recipient = GW_COL_RECIPIENT_PHONE;
    } else if (key == GW_POLICY_SEARCH_ID_NUMBER) {
        sender = GW_COL_SENDER_ID_NUMBER;
        recipient = GW_COL_RECIPIENT_ID_NUMBER;
    } else {
        return 0;
    }
    if (!in_search_keys(pol, role, key))
        return 0;
    if (gw_policy_view(pol, role, sender) != GW_VIEW_OMIT)
        sides |= GW_POLICY_SIDE_SENDER;
    if (gw_policy_view(pol, role, recipient) != GW_VIEW_OMIT)
        sides |= GW_POLICY_SIDE_RECIPIENT;
    return sides;
}

int gw_policy_max_level(const struct gw_policy *pol, const char *role)
{
    int r = gw_policy_role_index(role);

    return r >= 0 ? pol->level[r] : GW_POLICY_LEVEL_NONE;
}

void gw_policy_limits(const struct gw_policy *pol, const char *role, struct gw_policy_limits *out)
{
    int r = gw_policy_role_index(role);

    memset(out, 0, sizeof(*out));
    if (r >= 0)
        *out = pol->limits[r];
}
