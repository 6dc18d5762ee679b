/* test_policy.c: the policy file (docs/policy.md): the parser's refusals, each naming the file
 * and the line; the built-in policy equal to deploy/policy.conf; views, security levels, the
 * destination-branch scope, search keys, reveal grants and limits read from a file; a policy kept
 * alive by a call's reference across a reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy.h"

static struct gw_policy *parse_ok(const char *text)
{
    struct gw_policy *p = NULL;
    char err[256] = "";

    if (gw_policy_parse(text, strlen(text), "t.conf", NULL, 0, &p, err, sizeof(err)) != 0)
        fail_msg("policy refused: %s", err);
    assert_non_null(p);
    return p;
}

static void refused(const char *text, const char *want)
{
    struct gw_policy *p = (struct gw_policy *)1;
    char err[256] = "";

    if (gw_policy_parse(text, strlen(text), "t.conf", NULL, 0, &p, err, sizeof(err)) != GW_EINVAL)
        fail_msg("accepted:\n%s", text);
    assert_null(p);
    if (strcmp(err, want) != 0)
        fail_msg("for:\n%s\ngot  [%s]\nwant [%s]", text, err, want);
}

static void each_refusal_names_file_and_line(void **state)
{
    (void)state;
    refused("[view.courier]\nrecipient.phone = mask\nrecipient.phne = mask\n",
            "t.conf:3: [view.courier] recipient.phne: unknown field");
    refused("# c\n[views.courier]\n", "t.conf:2: [views.courier]: unknown section (expected "
                                      "[view.<role>], [levels], [reveal.<role>], "
                                      "[search.<role>] or [limits.<role>])");
    refused("[oops]\n", "t.conf:1: [oops]: unknown section (expected [view.<role>], [levels], "
                        "[reveal.<role>], [search.<role>] or [limits.<role>])");
    refused("[search.intern]\n", "t.conf:1: [search.intern]: unknown role");
    refused("[search.customer_service]\nkeys = phone, fone\n",
            "t.conf:2: [search.customer_service] keys: unknown search key fone (expected phone, "
            "id_number, waybill_no or pickup_day)");
    refused("[search.customer_service]\nkeys = phone, phone\n",
            "t.conf:2: [search.customer_service] keys: duplicate search key phone");
    refused("[search.customer_service]\nkeys = phone,\n",
            "t.conf:2: [search.customer_service] keys: empty key name in the list");
    refused("[search.customer_service]\nkey = phone\n",
            "t.conf:2: [search.customer_service] key: unknown key (expected keys)");
    refused("[search.customer_service]\nkeys = phone\nkeys = waybill_no\n",
            "t.conf:3: [search.customer_service] keys: duplicate key");
    refused("[search.courier]\n[search.courier]\n", "t.conf:2: duplicate section [search.courier]");
    refused("\n\n[view.couriers]\n", "t.conf:3: [view.couriers]: unknown role");
    refused("[limits.root]\n", "t.conf:1: [limits.root]: unknown role");
    refused("[view.courier]\nsender.name = blur\n",
            "t.conf:2: [view.courier] sender.name: unknown action (expected clear, mask, token "
            "or omit)");
    refused("[view.courier]\nsender.name = mask\nsender.name = clear\n",
            "t.conf:3: [view.courier] sender.name: duplicate field");
    refused("[view.courier]\n[view.backend]\n[view.courier]\n",
            "t.conf:3: duplicate section [view.courier]");
    refused("[levels]\n[levels]\n", "t.conf:2: duplicate section [levels]");
    refused("[levels]\ncourier = 4\n", "t.conf:2: [levels] courier: must be a security level 0 "
                                       "to 3");
    refused("[levels]\ncourier = -1\n", "t.conf:2: [levels] courier: must be a security level 0 "
                                        "to 3");
    refused("[levels]\ncourier = 1\ncourier = 0\n", "t.conf:3: [levels] courier: duplicate role");
    refused("[levels]\nintern = 1\n", "t.conf:2: [levels] intern: unknown role");
    refused("[limits.courier]\nreveals_per_hour = 12x\n",
            "t.conf:2: [limits.courier] reveals_per_hour: must be a whole number from 0 to "
            "1000000000");
    refused("[limits.courier]\nreveals_per_day = 99999999999\n",
            "t.conf:2: [limits.courier] reveals_per_day: must be a whole number from 0 to "
            "1000000000");
    refused("[limits.courier]\nsearch_limit_max =\n",
            "t.conf:2: [limits.courier] search_limit_max: must be a whole number from 0 to "
            "1000000000");
    refused("[limits.courier]\nreveals = 1\n",
            "t.conf:2: [limits.courier] reveals: unknown key (expected reveals_per_hour, "
            "reveals_per_day, lookups_per_window, lookup_window_s, arrivals_per_window or "
            "search_limit_max)");
    refused("[limits.courier]\nlookup_window_s = 60\nlookup_window_s = 60\n",
            "t.conf:3: [limits.courier] lookup_window_s: duplicate key");
    /* a throttle without a window would forget every look-up at once (it failed open) */
    refused("[limits.courier]\nlookups_per_window = 200\n",
            "t.conf:1: [limits.courier] lookup_window_s: must be at least 1 when "
            "lookups_per_window is above 0");
    refused("[levels]\n[limits.branch_clerk]\nlookups_per_window = 1\nlookup_window_s = 0\n",
            "t.conf:2: [limits.branch_clerk] lookup_window_s: must be at least 1 when "
            "lookups_per_window is above 0");
    gw_policy_free(parse_ok("[limits.courier]\nlookups_per_window = 0\n"));
    /* arrivals_per_window: the same range and the same window (a count of its own in it) */
    refused("[limits.courier]\narrivals_per_window = 2000\n",
            "t.conf:1: [limits.courier] lookup_window_s: must be at least 1 when "
            "arrivals_per_window is above 0");
    refused("[limits.courier]\nlookups_per_window = 0\narrivals_per_window = 1\n"
            "lookup_window_s = 0\n",
            "t.conf:1: [limits.courier] lookup_window_s: must be at least 1 when "
            "arrivals_per_window is above 0");
    refused("[limits.courier]\narrivals_per_window = 1000000001\n",
            "t.conf:2: [limits.courier] arrivals_per_window: must be a whole number from 0 to "
            "1000000000");
    refused("[limits.courier]\narrivals_per_window = -1\n",
            "t.conf:2: [limits.courier] arrivals_per_window: must be a whole number from 0 to "
            "1000000000");
    refused("[limits.courier]\nlookup_window_s = 60\narrivals_per_window = 5\n"
            "arrivals_per_window = 5\n",
            "t.conf:4: [limits.courier] arrivals_per_window: duplicate key");
    gw_policy_free(parse_ok("[limits.courier]\narrivals_per_window = 0\n"));
    refused("[reveal.courier]\nfields = recipient.phone, recipient.fone\n",
            "t.conf:2: [reveal.courier] fields: unknown field recipient.fone");
    refused("[reveal.courier]\nfields = recipient.phone, recipient.phone\n",
            "t.conf:2: [reveal.courier] fields: duplicate field recipient.phone");
    refused("[reveal.courier]\nfields = recipient.phone,\n",
            "t.conf:2: [reveal.courier] fields: empty field name in the list");
    refused("[reveal.courier]\nfield = recipient.phone\n",
            "t.conf:2: [reveal.courier] field: unknown key (expected fields)");
    refused("[reveal.courier]\nfields = sender.name\nfields = sender.phone\n",
            "t.conf:3: [reveal.courier] fields: duplicate key");
    refused("sender.name = mask\n", "t.conf:1: sender.name: key outside a section");
    refused("[view.courier]\nsender.name mask\n",
            "t.conf:2: [view.courier] sender.name mask: expected key = value");
    refused("[view.courier]\n= mask\n", "t.conf:2: a key is missing before '='");
    refused("[view.courier\n", "t.conf:1: [view.courier: a section line must end with ']'");
    refused("[view.courier]\npickup_time = mask\n",
            "t.conf:2: [view.courier] pickup_time: a numeric field takes only clear or omit");
    refused("[view.courier]\nsender.gender = token\n",
            "t.conf:2: [view.courier] sender.gender: a numeric field takes only clear or omit");
    /* a name from the file is quoted back printable and capped, never raw bytes */
    refused("[view.courier]\n\xe5\xa7\x93\xe5\x90\x8d = mask\n",
            "t.conf:2: [view.courier] ??????: unknown field");
}

/* Art. 34: a view grants no role more than its ceiling (docs/policy.md "Ceilings"): branch
 * roles no clear name, phone or ID number; compliance_auditor and security_admin no clear personal
 * field but the region; system_admin nothing but omit. Refused naming line, role, field, rule. */
static void views_stay_under_the_role_ceilings(void **state)
{
    static const char *const branch[] = {"courier", "branch_clerk", "customer_service"};
    static const char *const identity[] = {"sender.name",      "sender.phone",
                                           "sender.id_number", "recipient.name",
                                           "recipient.phone",  "recipient.id_number"};
    char text[256], want[512];
    struct gw_policy *p;

    (void)state;
    for (size_t r = 0; r < 3; r++)
        for (size_t f = 0; f < 6; f++) {
            snprintf(text, sizeof(text), "[view.%s]\nwaybill_no = clear\n%s = clear\n", branch[r],
                     identity[f]);
            snprintf(want, sizeof(want),
                     "t.conf:3: [view.%s] %s: clear exceeds the ceiling of %s: names, phones "
                     "and ID numbers only mask, token or omit (clear only by Reveal)",
                     branch[r], identity[f], branch[r]);
            refused(text, want);
        }
    refused("[levels]\ncompliance_auditor = 3\n[view.compliance_auditor]\n"
            "sender.id_number = clear\n",
            "t.conf:4: [view.compliance_auditor] sender.id_number: clear exceeds the ceiling of "
            "compliance_auditor: no personal field clear but province, city and district");
    refused("[view.security_admin]\nrecipient.city = clear\nrecipient.address_detail = clear\n",
            "t.conf:3: [view.security_admin] recipient.address_detail: clear exceeds the ceiling "
            "of security_admin: no personal field clear but province, city and district");
    refused("[view.compliance_auditor]\nwaybill_no = clear\n",
            "t.conf:2: [view.compliance_auditor] waybill_no: clear exceeds the ceiling of "
            "compliance_auditor: no personal field clear but province, city and district");
    refused("[view.security_admin]\nsender.gender = clear\n",
            "t.conf:2: [view.security_admin] sender.gender: clear exceeds the ceiling of "
            "security_admin: no personal field clear but province, city and district");
    refused("[view.system_admin]\nsender.province = omit\nsender.phone = token\n",
            "t.conf:3: [view.system_admin] sender.phone: token exceeds the ceiling of "
            "system_admin: no personal data at all (omit only)");
    refused("[view.system_admin]\nrecipient.city = clear\n",
            "t.conf:2: [view.system_admin] recipient.city: clear exceeds the ceiling of "
            "system_admin: no personal data at all (omit only)");
    refused("[view.system_admin]\nsender.name = mask\n",
            "t.conf:2: [view.system_admin] sender.name: mask exceeds the ceiling of system_admin: "
            "no personal data at all (omit only)");
    /* up to the ceiling is accepted: a courier's full address and company, an auditor's masked
     * name and clear region (what a masked address shows), a backend's clear phone */
    p = parse_ok("[view.courier]\nrecipient.address_detail = clear\nrecipient.company = clear\n"
                 "recipient.phone = token\nsender.name = mask\n"
                 "[view.branch_clerk]\nsender.id_number = mask\nitem_description = clear\n"
                 "[view.compliance_auditor]\nsender.name = mask\nrecipient.city = clear\n"
                 "sender.phone = token\n"
                 "[view.security_admin]\nrecipient.address_detail = mask\n"
                 "[view.system_admin]\nsender.name = omit\nwaybill_no = omit\n"
                 "[view.backend]\nrecipient.phone = clear\nsender.id_number = clear\n");
    assert_int_equal(gw_policy_view(p, "courier", GW_COL_RECIPIENT_ADDRESS_DETAIL), GW_VIEW_CLEAR);
    assert_int_equal(gw_policy_view(p, "compliance_auditor", GW_COL_RECIPIENT_CITY), GW_VIEW_CLEAR);
    assert_int_equal(gw_policy_view(p, "backend", GW_COL_RECIPIENT_PHONE), GW_VIEW_CLEAR);
    gw_policy_free(p);
}

/* gw_policy_view_modes (a rendered view's modes, the role looked up once) answers for every
 * field what gw_policy_view answers for it: every role, under the default policy and under a
 * file that moves fields to every mode; an unknown or absent role sees nothing. */
static void view_modes_are_the_fields_views(void **state)
{
    struct gw_policy *files[2] = {
        parse_ok(""),
        parse_ok("[view.courier]\nrecipient.address_detail = clear\nrecipient.phone = token\n"
                 "sender.name = mask\n[view.backend]\nrecipient.phone = clear\n"
                 "sender.id_number = omit\n[view.compliance_auditor]\nsender.phone = token\n")};
    const char *odd[] = {"no_such_role", "", NULL};
    enum gw_view_mode modes[GW_COL_COUNT];
    size_t seen[GW_VIEW_TOKEN + 1] = {0};

    (void)state;
    for (size_t f = 0; f < 2; f++) {
        for (size_t r = 0; gw_policy_roles[r] != NULL; r++) {
            gw_policy_view_modes(files[f], gw_policy_roles[r], modes);
            for (size_t c = 0; c < GW_COL_COUNT; c++) {
                assert_int_equal(modes[c],
                                 gw_policy_view(files[f], gw_policy_roles[r], (enum gw_col)c));
                seen[modes[c]]++;
            }
        }
        for (size_t r = 0; r < sizeof(odd) / sizeof(odd[0]); r++) {
            gw_policy_view_modes(files[f], odd[r], modes);
            for (size_t c = 0; c < GW_COL_COUNT; c++)
                assert_int_equal(modes[c], GW_VIEW_OMIT);
        }
        gw_policy_free(files[f]);
    }
    for (size_t m = 0; m <= GW_VIEW_TOKEN; m++)
        assert_true(seen[m] > 0); /* every mode was compared at least once */
}

static void refusal_of_a_file_names_its_path(void **state)
{
    char path[] = "/tmp/test_policy_XXXXXX";
    const char *text = "[levels]\ncourier = 1\n\n[view.courier]\nrecipient.phne = mask\n";
    struct gw_policy *p = NULL;
    char err[512], want[512];
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(gw_policy_load(path, NULL, 0, &p, err, sizeof(err)), GW_EINVAL);
    assert_null(p);
    snprintf(want, sizeof(want), "%s:5: [view.courier] recipient.phne: unknown field", path);
    assert_string_equal(err, want);
    /* a file group or others may write is refused, whatever it says */
    assert_int_equal(chmod(path, 0620), 0);
    assert_int_equal(gw_policy_load(path, NULL, 0, &p, err, sizeof(err)), GW_EPERM);
    assert_null(p);
    snprintf(want, sizeof(want),
             "%s: mode 0620 lets group or others write it; run chmod go-w on it", path);
    assert_string_equal(err, want);
    unlink(path);
    assert_int_equal(gw_policy_load(path, NULL, 0, &p, err, sizeof(err)), GW_EIO);
    assert_null(p);
    assert_non_null(strstr(err, path));
}

/* Reads deploy/policy.conf (WAYGATE_TEST_DATA is tests/unit/data). */
static char *read_default(size_t *len)
{
    const char *data = getenv("WAYGATE_TEST_DATA");
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/../../../deploy/policy.conf", data ? data : "data");
    f = fopen(path, "rb");
    char *buf = malloc(256 * 1024);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, 256 * 1024, f);
    fclose(f);
    *len = n;
    return buf;
}

/* The built-in policy is deploy/policy.conf: same view, level, reveal and limits for every role
 * and field. */
static void builtin_equals_deploy_policy_conf(void **state)
{
    struct gw_policy *b = gw_policy_new(NULL, 0), *f = NULL;
    char err[256];
    size_t len;
    char *text = read_default(&len);

    (void)state;
    assert_non_null(b);
    /* the shipped file loads: its views stay under every role's ceiling */
    if (gw_policy_parse(text, len, "deploy/policy.conf", NULL, 0, &f, err, sizeof(err)) != 0)
        fail_msg("deploy/policy.conf refused: %s", err);
    for (const char *const *r = gw_policy_roles; *r; r++) {
        struct gw_policy_limits lb, lf;
        for (int c = 0; c < GW_COL_COUNT; c++) {
            assert_int_equal(gw_policy_view(b, *r, (enum gw_col)c),
                             gw_policy_view(f, *r, (enum gw_col)c));
            assert_int_equal(gw_policy_may_reveal(b, *r, (enum gw_col)c),
                             gw_policy_may_reveal(f, *r, (enum gw_col)c));
        }
        for (int k = 0; k < GW_POLICY_SEARCH_NKEYS; k++)
            assert_int_equal(gw_policy_may_search_by(b, *r, (enum gw_policy_search_key)k),
                             gw_policy_may_search_by(f, *r, (enum gw_policy_search_key)k));
        assert_int_equal(gw_policy_max_level(b, *r), gw_policy_max_level(f, *r));
        gw_policy_limits(b, *r, &lb);
        gw_policy_limits(f, *r, &lf);
        assert_memory_equal(&lb, &lf, sizeof(lb));
    }
    free(text);
    gw_policy_free(f);
    gw_policy_free(b);
}

/* The defaults of docs/roles.md and docs/policy.md. */
static void defaults(void **state)
{
    struct gw_policy *p = gw_policy_new(NULL, 0);
    struct gw_policy_limits l;

    (void)state;
    assert_non_null(p);
    /* courier: masked names and phones, the full delivery address */
    assert_int_equal(gw_policy_view(p, "courier", GW_COL_RECIPIENT_NAME), GW_VIEW_MASK);
    assert_int_equal(gw_policy_view(p, "courier", GW_COL_RECIPIENT_PHONE), GW_VIEW_MASK);
    assert_int_equal(gw_policy_view(p, "courier", GW_COL_RECIPIENT_ADDRESS_DETAIL), GW_VIEW_CLEAR);
    assert_int_equal(gw_policy_view(p, "courier", GW_COL_SENDER_ID_NUMBER), GW_VIEW_OMIT);
    /* clerk and customer service: masked, address to the district */
    assert_int_equal(gw_policy_view(p, "branch_clerk", GW_COL_RECIPIENT_ADDRESS_DETAIL),
                     GW_VIEW_MASK);
    assert_int_equal(gw_policy_view(p, "branch_clerk", GW_COL_RECIPIENT_DISTRICT), GW_VIEW_CLEAR);
    assert_int_equal(gw_policy_view(p, "customer_service", GW_COL_SENDER_PHONE), GW_VIEW_MASK);
    assert_int_equal(gw_policy_view(p, "customer_service", GW_COL_SENDER_ID_NUMBER), GW_VIEW_OMIT);
    /* backend: tokens */
    assert_int_equal(gw_policy_view(p, "backend", GW_COL_RECIPIENT_PHONE), GW_VIEW_TOKEN);
    /* nothing of any clear value for any other role, nor for an unknown one */
    for (int c = 0; c < GW_COL_COUNT; c++) {
        static const char *const none[] = {"compliance_auditor", "security_admin", "system_admin",
                                           "lawful_access",      "nobody",         NULL};
        for (const char *const *r = none; *r; r++)
            assert_int_equal(gw_policy_view(p, *r, (enum gw_col)c), GW_VIEW_OMIT);
        assert_int_equal(gw_policy_view(p, NULL, (enum gw_col)c), GW_VIEW_OMIT);
        assert_false(gw_policy_may_reveal(p, "security_admin", (enum gw_col)c));
        /* a courier reveals the recipient's phone only */
        assert_int_equal(gw_policy_may_reveal(p, "courier", (enum gw_col)c),
                         c == GW_COL_RECIPIENT_PHONE);
    }
    /* Search keys (SPEC's role table): the clerk looks up and lists its branch's waybills (by
     * phone, ID number, number, pickup day); customer service searches by phone or number only;
     * no other role by any */
    for (int k = 0; k < GW_POLICY_SEARCH_NKEYS; k++) {
        static const char *const none[] = {"courier",        "compliance_auditor",
                                           "security_admin", "system_admin",
                                           "lawful_access",  "backend",
                                           "nobody",         NULL};
        enum gw_policy_search_key key = (enum gw_policy_search_key)k;
        assert_true(gw_policy_may_search_by(p, "branch_clerk", key));
        assert_int_equal(gw_policy_may_search_by(p, "customer_service", key),
                         key == GW_POLICY_SEARCH_PHONE || key == GW_POLICY_SEARCH_WAYBILL_NO);
        for (const char *const *r = none; *r; r++)
            assert_false(gw_policy_may_search_by(p, *r, key));
        assert_false(gw_policy_may_search_by(p, NULL, key));
    }
    assert_false(gw_policy_may_search_by(p, "branch_clerk", GW_POLICY_SEARCH_NKEYS));
    /* levels: what Search's statement asks for */
    assert_int_equal(gw_policy_max_level(p, "branch_clerk"), 1);
    assert_int_equal(gw_policy_max_level(p, "customer_service"), 0);
    assert_int_equal(gw_policy_max_level(p, "nobody"), -1);
    gw_policy_limits(p, "courier", &l);
    assert_int_equal(l.reveals_per_hour, 20);
    assert_int_equal(l.reveals_per_day, 100);
    assert_int_equal(l.lookups_per_window, 200);
    assert_int_equal(l.lookup_window_s, 600);
    assert_int_equal(l.arrivals_per_window, 2000);
    assert_int_equal(l.search_limit_max, 100);
    /* RecordScan is the courier's alone: no other role may scan anything in */
    gw_policy_limits(p, "branch_clerk", &l);
    assert_int_equal(l.arrivals_per_window, 0);
    gw_policy_limits(p, "nobody", &l);
    assert_int_equal(l.reveals_per_hour + l.reveals_per_day + l.lookups_per_window +
                         l.lookup_window_s + l.arrivals_per_window + l.search_limit_max,
                     0);
    gw_policy_limits(p, "system_admin", &l);
    assert_int_equal(l.reveals_per_hour, 0);
    gw_policy_free(p);
}

static struct gw_principal who(const char *role, const char *branch)
{
    struct gw_principal p;

    memset(&p, 0, sizeof(p));
    snprintf(p.name, sizeof(p.name), "%s", "x");
    snprintf(p.role, sizeof(p.role), "%s", role);
    snprintf(p.branch, sizeof(p.branch), "%s", branch);
    p.authn = GW_AUTHN_CERT;
    return p;
}

static void scope_branches_and_levels(void **state)
{
    struct gw_policy *p = parse_ok("[levels]\ncourier = 1\nbranch_clerk = 0\n");
    struct gw_principal a = who("courier", "a"), b = who("courier", "b"), nob = who("courier", "");
    struct gw_principal clerk = who("branch_clerk", "a"), cs = who("customer_service", "a");
    struct gw_policy_record r = {.origin_branch = "a", .dest_branch = "b", .security_level = 0};

    (void)state;
    assert_true(gw_policy_in_scope(p, &a, &r));    /* origin */
    assert_true(gw_policy_in_scope(p, &b, &r));    /* destination */
    assert_false(gw_policy_in_scope(p, &nob, &r)); /* no branch: nothing */
    r.dest_branch = NULL;
    assert_false(gw_policy_in_scope(p, &b, &r));
    r.dest_branch = "c";
    assert_false(gw_policy_in_scope(p, &b, &r));
    r.custody_branch = "b"; /* custody: b's device scanned it in */
    assert_true(gw_policy_in_scope(p, &b, &r));
    r.custody_branch = "c";
    assert_false(gw_policy_in_scope(p, &b, &r));
    r.custody_branch = NULL;
    /* levels: courier up to 1, clerk 0 only, customer service not listed: nothing */
    r.security_level = 1;
    assert_true(gw_policy_in_scope(p, &a, &r));
    assert_false(gw_policy_in_scope(p, &clerk, &r));
    r.security_level = 2;
    assert_false(gw_policy_in_scope(p, &a, &r));
    r.security_level = 0;
    assert_true(gw_policy_in_scope(p, &clerk, &r));
    assert_false(gw_policy_in_scope(p, &cs, &r));
    r.security_level = -1;
    assert_false(gw_policy_in_scope(p, &a, &r));
    gw_policy_free(p);
}

/* Reveal by where the record is (Art. 34): origin and destination reveal what the role may;
 * custody alone only the recipient's phone and only while delivering; a courier only for a
 * waybill its branch delivers. */
static void reveal_by_place(void **state)
{
    struct gw_policy *p = parse_ok("");
    struct gw_principal ca = who("courier", "a"), cb = who("courier", "b");
    struct gw_principal ka = who("branch_clerk", "a"), kb = who("branch_clerk", "b");
    struct gw_principal kc = who("branch_clerk", "c"), nob = who("branch_clerk", "");
    struct gw_policy_record r = {.origin_branch = "a", .dest_branch = "b"};

    (void)state;
    assert_true(gw_policy_may_reveal_here(p, &ka, &r, GW_COL_SENDER_NAME));      /* origin */
    assert_true(gw_policy_may_reveal_here(p, &kb, &r, GW_COL_SENDER_NAME));      /* destination */
    assert_false(gw_policy_may_reveal_here(p, &ca, &r, GW_COL_RECIPIENT_PHONE)); /* picked up */
    assert_true(gw_policy_may_reveal_here(p, &cb, &r, GW_COL_RECIPIENT_PHONE));  /* delivers */
    assert_false(gw_policy_may_reveal_here(p, &nob, &r, GW_COL_RECIPIENT_PHONE));
    /* custody at c: nothing until it goes out for delivery from there, then the phone alone */
    r.custody_branch = "c";
    assert_false(gw_policy_may_reveal_here(p, &kc, &r, GW_COL_RECIPIENT_PHONE));
    assert_false(gw_policy_may_reveal_here(p, &kc, &r, GW_COL_SENDER_NAME));
    r.custodian_delivers = true;
    assert_true(gw_policy_may_reveal_here(p, &kc, &r, GW_COL_RECIPIENT_PHONE));
    for (int c = 0; c < GW_COL_COUNT; c++)
        if (c != GW_COL_RECIPIENT_PHONE)
            assert_false(gw_policy_may_reveal_here(p, &kc, &r, (enum gw_col)c));
    /* delivering from c says nothing for the other branches' custody */
    assert_true(gw_policy_may_reveal_here(p, &ka, &r, GW_COL_SENDER_NAME));
    r.custody_branch = "b";
    assert_false(gw_policy_may_reveal_here(p, &kc, &r, GW_COL_RECIPIENT_PHONE));
    gw_policy_free(p);
}

/* Bulk scope (Art. 37): a central role without a branch covers every branch, only up to its
 * level; a branch-scoped principal keeps its branch scope; a role without a level sees nothing. */
static void bulk_scope_central_roles_by_level(void **state)
{
    struct gw_policy *p = parse_ok("[levels]\ncompliance_auditor = 0\ncourier = 1\n");
    struct gw_principal aud = who("compliance_auditor", ""), sec = who("security_admin", "");
    struct gw_principal a = who("courier", "a"), b = who("courier", "b");
    struct gw_policy_record r = {.origin_branch = "x", .dest_branch = "y", .security_level = 0};

    (void)state;
    assert_true(gw_policy_in_bulk_scope(p, &aud, &r));  /* any branch */
    assert_false(gw_policy_in_bulk_scope(p, &sec, &r)); /* no level listed: nothing */
    assert_false(gw_policy_in_bulk_scope(p, &a, &r));   /* a branch keeps its scope */
    r.origin_branch = "a";
    assert_true(gw_policy_in_bulk_scope(p, &a, &r));
    assert_false(gw_policy_in_bulk_scope(p, &b, &r));
    r.security_level = 1;
    assert_false(gw_policy_in_bulk_scope(p, &aud, &r)); /* above its level */
    assert_true(gw_policy_in_bulk_scope(p, &a, &r));
    r.security_level = -1;
    assert_false(gw_policy_in_bulk_scope(p, &aud, &r));
    /* the level a run's count is narrowed to: in_bulk_scope's ceiling, -1 for none */
    assert_int_equal(gw_policy_max_level(p, aud.role), 0);
    assert_int_equal(gw_policy_max_level(p, a.role), 1);
    assert_int_equal(gw_policy_max_level(p, sec.role), -1);
    gw_policy_free(p);
}

/* Lawful scope (Art. 16): the case chose the record, by no branch; the role's level still bounds
 * it, as every role's; a policy without lawful_access in [levels] lets it read nothing. */
static void lawful_scope_by_level_alone(void **state)
{
    struct gw_policy *p = parse_ok("[levels]\nlawful_access = 1\n");
    struct gw_policy *none = parse_ok("[levels]\ncourier = 3\n");
    struct gw_principal officer = who("lawful_access", ""), courier = who("courier", "a");
    struct gw_policy_record r = {.origin_branch = "x", .dest_branch = "y", .security_level = 0};

    (void)state;
    assert_true(gw_policy_in_lawful_scope(p, &officer, &r)); /* any branch */
    assert_false(gw_policy_in_scope(p, &officer, &r));       /* no branch: no ordinary scope */
    r.security_level = 1;
    assert_true(gw_policy_in_lawful_scope(p, &officer, &r));
    r.security_level = 2;
    assert_false(gw_policy_in_lawful_scope(p, &officer, &r)); /* above its level */
    r.security_level = -1;
    assert_false(gw_policy_in_lawful_scope(p, &officer, &r));
    r.security_level = 0;
    assert_false(gw_policy_in_lawful_scope(p, &courier, &r)); /* courier not listed here */
    assert_false(gw_policy_in_lawful_scope(none, &officer, &r));
    gw_policy_free(none);
    gw_policy_free(p);
}

static void file_sets_views_reveals_and_limits(void **state)
{
    struct gw_policy *p = parse_ok("# a comment\n"
                                   "; another\n"
                                   "[view.backend]   # trailing comment\n"
                                   "  recipient.phone =   clear  \r\n"
                                   "sender.name = token\n"
                                   "sender.phone = omit\n"
                                   "[view.courier]\n"
                                   "[reveal.branch_clerk]\n"
                                   "fields = sender.name ,recipient.id_number\n"
                                   "[reveal.courier]\n"
                                   "fields =\n"
                                   "[search.backend]\n"
                                   "keys = pickup_day , phone\n"
                                   "[search.branch_clerk]\n"
                                   "keys =\n"
                                   "[limits.backend]\n"
                                   "lookups_per_window = 1000000000\n"
                                   "lookup_window_s = 1\n"
                                   "arrivals_per_window = 1000000000\n"
                                   "[limits.courier]\n"
                                   "arrivals_per_window = 7\n"
                                   "lookup_window_s = 60\n");
    struct gw_policy_limits l;

    (void)state;
    assert_int_equal(gw_policy_view(p, "backend", GW_COL_RECIPIENT_PHONE), GW_VIEW_CLEAR);
    assert_int_equal(gw_policy_view(p, "backend", GW_COL_SENDER_NAME), GW_VIEW_TOKEN);
    assert_int_equal(gw_policy_view(p, "backend", GW_COL_SENDER_PHONE), GW_VIEW_OMIT);
    assert_int_equal(gw_policy_view(p, "backend", GW_COL_WAYBILL_NO), GW_VIEW_OMIT);
    for (int c = 0; c < GW_COL_COUNT; c++) {
        assert_int_equal(gw_policy_view(p, "courier", (enum gw_col)c), GW_VIEW_OMIT);
        assert_false(gw_policy_may_reveal(p, "courier", (enum gw_col)c));
        assert_int_equal(gw_policy_may_reveal(p, "branch_clerk", (enum gw_col)c),
                         c == GW_COL_SENDER_NAME || c == GW_COL_RECIPIENT_ID_NUMBER);
    }
    for (int k = 0; k < GW_POLICY_SEARCH_NKEYS; k++) {
        enum gw_policy_search_key key = (enum gw_policy_search_key)k;
        assert_int_equal(gw_policy_may_search_by(p, "backend", key),
                         key == GW_POLICY_SEARCH_PICKUP_DAY || key == GW_POLICY_SEARCH_PHONE);
        assert_false(gw_policy_may_search_by(p, "branch_clerk", key));
        assert_false(gw_policy_may_search_by(p, "customer_service", key)); /* no section */
    }
    assert_int_equal(gw_policy_max_level(p, "backend"), -1); /* no [levels] */
    gw_policy_limits(p, "backend", &l);
    assert_int_equal(l.lookups_per_window, 1000000000u);
    assert_int_equal(l.lookup_window_s, 1);
    assert_int_equal(l.arrivals_per_window, 1000000000u);
    assert_int_equal(l.reveals_per_hour, 0);
    /* arrivals without lookups: each its own key; what is left out is 0 (none allowed) */
    gw_policy_limits(p, "courier", &l);
    assert_int_equal(l.arrivals_per_window, 7);
    assert_int_equal(l.lookup_window_s, 60);
    assert_int_equal(l.lookups_per_window, 0);
    /* method permissions stay the built-in ones whatever the file */
    assert_non_null(gw_policy_method_rule(p, "/waygate.v1.WaybillQuery/Get"));
    gw_policy_free(p);
}

/* A file written before arrivals_per_window keeps its couriers scanning in, bounded: a
 * [limits.<role>] section with a window that leaves the key out gets the default; 0 written
 * stays 0; a section without a window, or no section, gets nothing. */
static void arrivals_left_out_get_the_default(void **state)
{
    struct gw_policy *p = parse_ok("[limits.courier]\n"
                                   "lookups_per_window = 5\n"
                                   "lookup_window_s = 60\n"
                                   "[limits.branch_clerk]\n"
                                   "lookups_per_window = 5\n"
                                   "lookup_window_s = 60\n"
                                   "arrivals_per_window = 0\n"
                                   "[limits.customer_service]\n"
                                   "reveals_per_hour = 3\n");
    struct gw_policy_limits l;

    (void)state;
    gw_policy_limits(p, "courier", &l);
    assert_int_equal(l.arrivals_per_window, GW_POLICY_ARRIVALS_DEFAULT);
    assert_int_equal(l.lookups_per_window, 5);
    gw_policy_limits(p, "branch_clerk", &l);
    assert_int_equal(l.arrivals_per_window, 0);
    gw_policy_limits(p, "customer_service", &l);
    assert_int_equal(l.arrivals_per_window, 0);
    gw_policy_limits(p, "backend", &l);
    assert_int_equal(l.arrivals_per_window, 0);
    gw_policy_free(p);
}

/* A Search by a person's key matches a side only when the role's view shows that side's field
 * (docs/policy.md, "Search keys"): the built-in clerk finds by the sender's ID number alone (its
 * view omits the recipient's) and by either phone; a view that omits the field on both sides
 * takes the key away, whatever [search.<role>] says; the number and the day belong to no side. */
static void search_sides_follow_the_view(void **state)
{
    const unsigned both = GW_POLICY_SIDE_SENDER | GW_POLICY_SIDE_RECIPIENT;
    struct gw_policy *p = gw_policy_new(NULL, 0);
    struct gw_policy *f;

    (void)state;
    assert_non_null(p);
    assert_int_equal(gw_policy_search_sides(p, "branch_clerk", GW_POLICY_SEARCH_ID_NUMBER),
                     GW_POLICY_SIDE_SENDER);
    assert_int_equal(gw_policy_search_sides(p, "branch_clerk", GW_POLICY_SEARCH_PHONE), both);
    assert_int_equal(gw_policy_search_sides(p, "customer_service", GW_POLICY_SEARCH_PHONE), both);
    /* not among its keys: no side, whatever its view shows */
    assert_int_equal(gw_policy_search_sides(p, "customer_service", GW_POLICY_SEARCH_ID_NUMBER), 0);
    assert_int_equal(gw_policy_search_sides(p, "courier", GW_POLICY_SEARCH_PHONE), 0);
    assert_int_equal(gw_policy_search_sides(p, "nobody", GW_POLICY_SEARCH_PHONE), 0);
    assert_int_equal(gw_policy_search_sides(p, NULL, GW_POLICY_SEARCH_PHONE), 0);
    assert_int_equal(gw_policy_search_sides(p, "branch_clerk", GW_POLICY_SEARCH_WAYBILL_NO), 0);
    assert_int_equal(gw_policy_search_sides(p, "branch_clerk", GW_POLICY_SEARCH_PICKUP_DAY), 0);
    assert_int_equal(gw_policy_search_sides(p, "branch_clerk", GW_POLICY_SEARCH_NKEYS), 0);
    gw_policy_free(p);

    f = parse_ok("[view.branch_clerk]\n"
                 "recipient.id_number = mask\n"
                 "sender.phone = mask\n"
                 "[view.customer_service]\n"
                 "sender.phone = mask\n"
                 "[search.branch_clerk]\n"
                 "keys = phone, id_number, waybill_no\n"
                 "[search.customer_service]\n"
                 "keys = phone, id_number, pickup_day\n");
    assert_int_equal(gw_policy_search_sides(f, "branch_clerk", GW_POLICY_SEARCH_ID_NUMBER),
                     GW_POLICY_SIDE_RECIPIENT);
    assert_int_equal(gw_policy_search_sides(f, "branch_clerk", GW_POLICY_SEARCH_PHONE),
                     GW_POLICY_SIDE_SENDER);
    assert_true(gw_policy_may_search_by(f, "branch_clerk", GW_POLICY_SEARCH_ID_NUMBER));
    /* its view omits both ID numbers: the key is refused as one not in its keys */
    assert_int_equal(gw_policy_search_sides(f, "customer_service", GW_POLICY_SEARCH_ID_NUMBER), 0);
    assert_false(gw_policy_may_search_by(f, "customer_service", GW_POLICY_SEARCH_ID_NUMBER));
    assert_true(gw_policy_may_search_by(f, "customer_service", GW_POLICY_SEARCH_PHONE));
    assert_true(gw_policy_may_search_by(f, "customer_service", GW_POLICY_SEARCH_PICKUP_DAY));
    assert_false(gw_policy_may_search_by(f, "customer_service", GW_POLICY_SEARCH_WAYBILL_NO));
    gw_policy_free(f);
}

/* A call's reference keeps the policy it started with while a reload replaces and frees the
 * daemon's; under ASan a use after free here fails. */
/* Art. 31, 34: a certificate registered for administration reaches, without a token, only what
 * any authenticated caller may; with a token the account's role applies; other certificates keep
 * their own role. */
static void admin_certificate_needs_a_token(void **state)
{
    struct gw_policy *p = gw_policy_new(NULL, 0);
    struct gw_principal adm = who("security_admin", "");
    struct gw_principal acct;
    struct gw_principal courier = who("courier", "a");
    struct gw_fault f;
    char msg[256];

    (void)state;
    assert_non_null(p);
    adm.cert_admin = true;
    snprintf(adm.cert, sizeof(adm.cert), "%s", "admin");
    assert_int_equal(gw_policy_may_call(p, "/waygate.v1.Admin/Login", &adm, &f), 0);
    assert_int_equal(gw_policy_may_call(p, "/waygate.v1.Admin/ChangePassword", &adm, &f), 0);
    assert_int_equal(gw_policy_may_call(p, "/grpc.health.v1.Health/Check", &adm, &f), 0);
    static const char *const refused_paths[] = {"/waygate.v1.Admin/CreateAccount",
                                                "/waygate.v1.Admin/DisableAccount",
                                                "/waygate.v1.Compliance/DecideLawfulAccess",
                                                "/waygate.v1.Compliance/RequestBulk",
                                                "/waygate.v1.Nothing/Here",
                                                NULL};
    for (const char *const *m = refused_paths; *m; m++) {
        assert_int_equal(gw_policy_may_call(p, *m, &adm, &f), GW_EPERM);
        assert_int_equal(f.rule, GW_RULE_ADMIN_CERT_NEEDS_TOKEN);
    }
    gw_fault_format(&f, msg, sizeof(msg));
    assert_non_null(strstr(msg, "acts only through an account's token"));
    /* the same certificate carrying secadmin's session */
    acct = adm;
    acct.authn = GW_AUTHN_TOKEN;
    acct.account_id = 1;
    assert_int_equal(gw_policy_may_call(p, "/waygate.v1.Admin/CreateAccount", &acct, &f), 0);
    /* a certificate not registered for administration keeps its role */
    assert_int_equal(gw_policy_may_call(p, "/waygate.v1.WaybillIntake/Submit", &courier, &f), 0);
    /* unless its role is a people's role: such a certificate is an administration channel
     * whatever its flag says (a row the CLI and sql/041 would refuse), so without a token it
     * reaches none of its role's methods (Art. 31, 34) */
    static const struct {
        const char *role, *path;
    } people[] = {
        {"security_admin", "/waygate.v1.Admin/CreateAccount"},
        {"security_admin", "/waygate.v1.Admin/RotateKey"},
        {"security_admin", "/waygate.v1.Compliance/DecideLawfulAccess"},
        {"compliance_auditor", "/waygate.v1.Compliance/ExportAudit"},
        {"compliance_auditor", "/waygate.v1.Compliance/Report"},
        {"lawful_access", "/waygate.v1.Compliance/RequestLawfulAccess"},
        {"lawful_access", "/waygate.v1.WaybillQuery/Get"},
        {"system_admin", "/waygate.v1.Nothing/Here"},
    };
    for (size_t i = 0; i < sizeof(people) / sizeof(people[0]); i++) {
        struct gw_principal c = who(people[i].role, "");

        assert_false(c.cert_admin);
        assert_int_equal(gw_policy_may_call(p, people[i].path, &c, &f), GW_EPERM);
        assert_int_equal(f.rule, GW_RULE_ADMIN_CERT_NEEDS_TOKEN);
        assert_string_equal(f.field, "authorization");
        assert_int_equal(gw_policy_may_call(p, "/waygate.v1.Admin/Login", &c, &f), 0);
    }
    /* the device and system roles keep theirs without the flag */
    struct gw_principal clerk = who("branch_clerk", "a"), backend = who("backend", "");
    assert_int_equal(gw_policy_may_call(p, "/waygate.v1.WaybillQuery/Search", &clerk, &f), 0);
    assert_int_equal(gw_policy_may_call(p, "/waygate.v1.WaybillQuery/Get", &clerk, &f), 0);
    assert_int_equal(gw_policy_may_call(p, "/waygate.v1.Admin/CreateAccount", &backend, &f),
                     GW_EPERM);
    assert_int_equal(f.rule, GW_RULE_ROLE_DENIED);
    gw_policy_free(p);
}

static void reference_outlives_reload(void **state)
{
    struct gw_policy *old = gw_policy_new(NULL, 0), *nw = NULL;
    const struct gw_policy *held;
    char err[256];
    const char *bad = "[view.courier]\nrecipient.phone = shout\n";

    (void)state;
    held = gw_policy_ref(old);
    /* a bad new file: no policy made, the old one untouched */
    assert_int_equal(gw_policy_parse(bad, strlen(bad), "new.conf", NULL, 0, &nw, err, sizeof(err)),
                     GW_EINVAL);
    assert_null(nw);
    assert_string_equal(err, "new.conf:2: [view.courier] recipient.phone: unknown action "
                             "(expected clear, mask, token or omit)");
    /* a good one replaces it; the holder still reads the old views */
    nw = parse_ok("[view.courier]\nrecipient.phone = token\n");
    gw_policy_free(old);
    assert_int_equal(gw_policy_view(held, "courier", GW_COL_RECIPIENT_PHONE), GW_VIEW_MASK);
    assert_int_equal(gw_policy_view(nw, "courier", GW_COL_RECIPIENT_PHONE), GW_VIEW_TOKEN);
    gw_policy_unref(held);
    gw_policy_unref(NULL);
    gw_policy_free(nw);
}

/* Random damage to deploy/policy.conf (bytes flipped, inserted, lines cut): every parse ends in
 * a policy or in one refusal "t.conf:<line>: ..." with a line inside the text; nothing crashes
 * or leaks (ASan). Deterministic: a fixed seed. */
static void damaged_files_refused_cleanly(void **state)
{
    static const char noise[] = "[]=.#,\n \xff\xe5x0_";
    size_t len;
    char *text = read_default(&len);
    char *buf = malloc(len + 64);
    unsigned seed = 12345;

    (void)state;
    assert_non_null(buf);
    for (int round = 0; round < 3000; round++) {
        struct gw_policy *p = NULL;
        char err[256] = "";
        size_t n = len, lines = 1;
        int rc;

        memcpy(buf, text, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            size_t at;
            seed = seed * 1103515245u + 12345u;
            at = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 3 == 0 && n + 1 < len + 64) { /* insert */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = noise[(seed >> 4) % (sizeof(noise) - 1)];
                n++;
            } else if ((seed >> 16) % 3 == 1) { /* cut the rest */
                n = at;
            } else {
                buf[at] = noise[(seed >> 4) % (sizeof(noise) - 1)];
            }
            if (n == 0)
                break;
        }
        for (size_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
        rc = gw_policy_parse(buf, n, "t.conf", NULL, 0, &p, err, sizeof(err));
        if (rc == 0) {
            assert_non_null(p);
            gw_policy_free(p);
            continue;
        }
        assert_int_equal(rc, GW_EINVAL);
        assert_null(p);
        unsigned line = 0;
        if (sscanf(err, "t.conf:%u: ", &line) != 1 || line == 0 || line > lines)
            fail_msg("round %d: bad message [%s]", round, err);
    }
    free(buf);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_refusal_names_file_and_line),
        cmocka_unit_test(views_stay_under_the_role_ceilings),
        cmocka_unit_test(refusal_of_a_file_names_its_path),
        cmocka_unit_test(builtin_equals_deploy_policy_conf),
        cmocka_unit_test(defaults),
        cmocka_unit_test(scope_branches_and_levels),
        cmocka_unit_test(reveal_by_place),
        cmocka_unit_test(bulk_scope_central_roles_by_level),
        cmocka_unit_test(lawful_scope_by_level_alone),
        cmocka_unit_test(file_sets_views_reveals_and_limits),
        cmocka_unit_test(view_modes_are_the_fields_views),
        cmocka_unit_test(arrivals_left_out_get_the_default),
        cmocka_unit_test(search_sides_follow_the_view),
        cmocka_unit_test(admin_certificate_needs_a_token),
        cmocka_unit_test(reference_outlives_reload),
        cmocka_unit_test(damaged_files_refused_cleanly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
