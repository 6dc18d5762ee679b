/* policy.h: the one place that answers "may this caller do this, and see what". It owns
 *  - method permissions: which roles may call which gRPC method (deny by default: a method
 *    without a rule is refused to everyone; a rule open to anyone must say so);
 *  - field views: how each role sees each encrypted field (view.h renders a field);
 *  - scope: whether a principal may see a given record at all (branch, security level);
 *  - the keys each role may Search by, what it may reveal, and its limits.
 * Method permissions are built in; views, levels, search keys, reveal grants and limits come
 * from a policy file (docs/policy.md, parsed by policy_file.c). The built-in policy is
 * deploy/policy.conf compiled in. A policy is immutable once made and reference-counted: a reload
 * makes a new one, and a call keeps the one it started with (gw_policy_ref) until it ends. Pure
 * apart from gw_policy_load reading its file: no logging. A policy may be read from any thread; its
 * reference count is taken and dropped on the event-loop thread only. */
#ifndef GW_POLICY_H
#define GW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "record.h"
#include "view.h"

/* The roles of docs/roles.md (Art. 34). A role name not in this list never passes a check. */
extern const char *const gw_policy_roles[];

enum gw_policy_access {
    GW_POLICY_ROLES = 0,     /* an authenticated principal holding one of the rule's roles */
    GW_POLICY_AUTHENTICATED, /* any authenticated principal (the account layer decides more) */
    GW_POLICY_ANYONE,        /* also unauthenticated callers (the health check) */
};

/* One method-permission rule. roles: NULL-terminated, used with GW_POLICY_ROLES. */
struct gw_policy_method {
    const char *path; /* "/waygate.v1.WaybillIntake/Submit" */
    enum gw_policy_access access;
    const char *const *roles;
};

struct gw_policy;

/* The built-in policy (deploy/policy.conf as compiled in) plus n extra method rules (a test
 * build registers its test-only methods this way; NULL/0 otherwise; the array must outlive the
 * policy). Returns NULL on allocation failure. The caller holds one reference. */
struct gw_policy *gw_policy_new(const struct gw_policy_method *extra, size_t n);

/* Parses policy text (len bytes; name is the file as named in messages) into *out, with the
 * built-in method rules plus extra as gw_policy_new. Returns 0, GW_ENOMEM, or GW_EINVAL with one
 * line in err naming the file, the line and the reason, e.g.
 *   "policy.conf:12: [view.courier] recipient.phne: unknown field"
 * On failure *out is NULL. The caller holds one reference to *out. */
int gw_policy_parse(const char *text, size_t len, const char *name,
                    const struct gw_policy_method *extra, size_t n, struct gw_policy **out,
                    char *err, size_t errsz) GW_MUST_CHECK;

/* gw_policy_parse of the file at path (at most 256 KiB); GW_EIO when it cannot be read,
 * GW_EPERM when group or others may write it. */
int gw_policy_load(const char *path, const struct gw_policy_method *extra, size_t n,
                   struct gw_policy **out, char *err, size_t errsz) GW_MUST_CHECK;

/* Takes one more reference to p (NULL-safe) and returns it. */
const struct gw_policy *gw_policy_ref(const struct gw_policy *p);
/* Drops one reference; the last one frees the policy. NULL-safe. */
void gw_policy_unref(const struct gw_policy *p);
/* Drops the creator's reference (gw_policy_unref). */
void gw_policy_free(struct gw_policy *p);

/* May principal p call the method at path? Returns 0, GW_EAUTH (the method needs an
 * authenticated caller), GW_EPRECOND (a token whose password must change, for any method but
 * ChangePassword, Art. 35) or GW_EPERM (no rule for the method, or p's role is not in it). On
 * refusal *f names the rule (for GW_EPERM the field is "role <role>"). A certificate principal
 * registered for administration, or of a people's role (gw_account_role_person_only) whatever
 * its flag, reaches only what any authenticated caller may: otherwise GW_EPERM, field
 * "authorization", GW_RULE_ADMIN_CERT_NEEDS_TOKEN (Art. 31: every administrative act names a
 * person). */
int gw_policy_may_call(const struct gw_policy *pol, const char *path, const struct gw_principal *p,
                       struct gw_fault *f) GW_MUST_CHECK;

/* Is every call of a principal in this role confidential? True for lawful_access (Art. 16): what
 * its accounts do, answered or refused, whatever the method, tells of lawful access, so their
 * calls are counted in no per-method metric and leave no line in the log that names them
 * (call.h). */
bool gw_policy_confidential_role(const char *role);

/* The rule for path, or NULL when there is none (for tests and documentation). */
const struct gw_policy_method *gw_policy_method_rule(const struct gw_policy *pol, const char *path);

/* What a scope decision looks at: the clear operational columns of a record that place it. */
struct gw_policy_record {
    const char *origin_branch;  /* the branch that accepted the waybill */
    const char *dest_branch;    /* the branch its destination region routes to; NULL: none */
    const char *custody_branch; /* the branch holding custody of it (scanned in, not yet gone or
                                 * delivered; sql/011_scan.sql); NULL: none */
    bool custodian_delivers;    /* its latest event is OUT_FOR_DELIVERY or DELIVERY_FAILED (from
                                 * the custodian's branch, sql/042): the custodian delivers it */
    int security_level;         /* enum Waygate__V1__SecurityLevel value, 0 = unclassified */
};

/* True when p may see the record at all: a branch-scoped principal sees the records its branch
 * accepted (origin), delivers (destination branch, routing table) or holds in custody. A
 * principal without a branch sees none. A record above the highest security level p's
 * role may see ([levels]; a role not listed sees none) is outside the scope too. A record
 * outside the scope must be answered exactly like a record that does not exist. Every read
 * path asks this one function but a bulk run's and a lawful read's (below), whose scopes decide
 * the level by the same check. */
bool gw_policy_in_scope(const struct gw_policy *pol, const struct gw_principal *p,
                        const struct gw_policy_record *rec);

/* May p reveal column col of a record in its scope (gw_policy_in_scope), once its role may reveal
 * that field at all ([reveal.<role>])? Where the record is decides (least privilege, Art. 34): a
 * branch that accepted it (origin) or delivers it (destination) reveals what its role may; a
 * branch that holds it only in custody reveals the recipient's phone alone, and only while it
 * delivers it (the call at the door), whatever its role; a courier reveals only for a waybill its
 * branch delivers (destination, or custody while delivering), never for one it only picked up. */
bool gw_policy_may_reveal_here(const struct gw_policy *pol, const struct gw_principal *p,
                               const struct gw_policy_record *rec, enum gw_col col);

/* The scope of an approved bulk operation (Art. 37): as gw_policy_in_scope for a branch-scoped
 * principal; a central principal without a branch (compliance, security administration) covers
 * every branch, still only up to its role's highest security level. The request's selector and
 * its second person's approval narrow it; this function decides only what a bulk run may ever
 * include. */
bool gw_policy_in_bulk_scope(const struct gw_policy *pol, const struct gw_principal *p,
                             const struct gw_policy_record *rec);

/* The scope of a lawful read (Art. 16): which records is decided by the caller's approved,
 * unexpired cases (the database: sql/010_lawful.sql), not by a branch; this decides the level
 * alone. The levels bind lawful_access as every role: a record above its role's highest level
 * ([levels]; a role not listed sees none) is outside the scope whoever approved the case, and
 * must be answered exactly like a number no case names. A carrier whose officers are to reach
 * classified records raises lawful_access's level in the policy file. */
bool gw_policy_in_lawful_scope(const struct gw_policy *pol, const struct gw_principal *p,
                               const struct gw_policy_record *rec);

/* How role sees field col (deny by default: GW_VIEW_OMIT for anything not granted). */
enum gw_view_mode gw_policy_view(const struct gw_policy *pol, const char *role, enum gw_col col);

/* Every field's gw_policy_view for role at once (the role looked up once: a view rendered per
 * delivery or per search result asks for all of them). */
void gw_policy_view_modes(const struct gw_policy *pol, const char *role,
                          enum gw_view_mode modes[GW_COL_COUNT]);

/* May role reveal field col at all (Reveal)? Deny by default. Whether the record allows it (a
 * courier: only a waybill its branch delivers) is the caller's further check. */
bool gw_policy_may_reveal(const struct gw_policy *pol, const char *role, enum gw_col col);

/* The keys of WaybillQuery/Search (SearchRequest's key oneof, query.proto). */
enum gw_policy_search_key {
    GW_POLICY_SEARCH_PHONE = 0,
    GW_POLICY_SEARCH_ID_NUMBER,
    GW_POLICY_SEARCH_WAYBILL_NO,
    GW_POLICY_SEARCH_PICKUP_DAY,
    GW_POLICY_SEARCH_NKEYS
};
/* Their names, as the request's fields and the policy file's [search.<role>] keys name them:
 * "phone", "id_number", "waybill_no", "pickup_day". */
extern const char *const gw_policy_search_keys[GW_POLICY_SEARCH_NKEYS];

/* May role Search by key? Deny by default: a role without the section, an unknown role or key may
 * search by none. True when the key is among its [search.<role>] keys and, for a person's key
 * (phone, id_number), it may match at least one side (gw_policy_search_sides): a role whose view
 * omits that field on both sides may not search by it, whatever its keys say. The method
 * permission (gw_policy_may_call) is checked before; this decides which of Search's keys the
 * role's duty needs. */
bool gw_policy_may_search_by(const struct gw_policy *pol, const char *role,
                             enum gw_policy_search_key key);

/* The sides of a waybill a person's key may be matched on. */
enum gw_policy_side {
    GW_POLICY_SIDE_SENDER = 1u << 0,
    GW_POLICY_SIDE_RECIPIENT = 1u << 1,
};

/* Which sides (a set of enum gw_policy_side) a Search by key may match for role: a person's key
 * (phone: sender.phone, recipient.phone; id_number: sender.id_number, recipient.id_number) matches
 * a side only when the key is among the role's [search.<role>] keys and its view ([view.<role>])
 * does not omit that side's field: a record is never found by a value the role may not see. 0
 * when it matches none: a role that may not search by the key, an unknown role, or a key that is
 * not a person's (waybill_no and pickup_day belong to no side). */
unsigned gw_policy_search_sides(const struct gw_policy *pol, const char *role,
                                enum gw_policy_search_key key);

/* The highest security level of a record role may see ([levels]), or -1 when it sees none (a
 * role not listed, an unknown role): the bound gw_policy_in_scope holds a record's level to, for
 * a read that selects by it before reading (Search's statement). */
int gw_policy_max_level(const struct gw_policy *pol, const char *role);

/* A role's limits (the policy file's [limits.<role>]; 0 means "none allowed"). */
struct gw_policy_limits {
    uint32_t reveals_per_hour;   /* Reveal calls per account (or certificate) per hour */
    uint32_t reveals_per_day;    /* ... and per calendar day (UTC) */
    uint32_t lookups_per_window; /* distinct waybills or phones looked up per window */
    uint32_t lookup_window_s;    /* the window, seconds (of lookups and arrivals alike) */
    /* distinct waybills a principal records ARRIVED for per window (RecordScan: an arrival
     * takes custody of any branch's waybill, so its rate is bounded on its own) */
    uint32_t arrivals_per_window;
#define GW_POLICY_ARRIVALS_DEFAULT 2000u /* a [limits.<role>] section that leaves it out */
    uint32_t search_limit_max;           /* most results one Search page returns */
};

/* The limits of role (an unknown role gets all zeros: nothing allowed). */
void gw_policy_limits(const struct gw_policy *pol, const char *role, struct gw_policy_limits *out);

#endif
