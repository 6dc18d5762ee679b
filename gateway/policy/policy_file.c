/* policy_file.c: the policy file's parser (docs/policy.md): INI text -> struct gw_policy.
 * Invariants: every name is checked against the roles, fields, actions, search keys and keys it
 * may be; a section or key given twice is refused; the first problem ends the parse with one
 * message "file:line: [section] key: reason" and nothing allocated; values are never quoted back
 * beyond a capped, printable-ASCII copy of a name. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "file.h"
#include "policy_int.h"

#define POLICY_FILE_MAX (256 * 1024) /* bytes of a policy file */
#define POLICY_LINE_MAX 1024         /* bytes of one line, newline excluded */
#define NAME_SHOWN_MAX 64            /* bytes of a name quoted back in a message */
#define NUMBER_MAX 1000000000u       /* largest limit */

/* The keys of a [limits.<role>] section, and their slots in struct gw_policy_limits. */
enum {
    LIM_REVEALS_HOUR,
    LIM_REVEALS_DAY,
    LIM_LOOKUPS,
    LIM_WINDOW,
    LIM_ARRIVALS,
    LIM_SEARCH_MAX,
    NLIMITS
};

enum section_kind { SEC_NONE = 0, SEC_VIEW, SEC_LEVELS, SEC_REVEAL, SEC_SEARCH, SEC_LIMITS };

struct parse {
    const char *name; /* the file as named in messages */
    unsigned line;
    char *err;
    size_t errsz;
    char section[NAME_SHOWN_MAX + 8]; /* "[view.courier]" as shown in messages */
    enum section_kind kind;
    int role; /* the section's role index (view, reveal, search, limits) */
    /* what was set already, for duplicates */
    bool seen_view[GW_POLICY_NROLES], seen_reveal[GW_POLICY_NROLES];
    bool seen_search[GW_POLICY_NROLES], seen_limits[GW_POLICY_NROLES], seen_levels;
    bool set_view[GW_POLICY_NROLES][GW_COL_COUNT];
    bool set_level[GW_POLICY_NROLES], set_reveal_fields[GW_POLICY_NROLES];
    bool set_search_keys[GW_POLICY_NROLES];
    bool set_limit[GW_POLICY_NROLES][NLIMITS];
    unsigned limits_line[GW_POLICY_NROLES]; /* where [limits.<role>] opened */
    struct gw_policy *pol;
};

static const char *const limit_keys[NLIMITS] = {
    [LIM_REVEALS_HOUR] = "reveals_per_hour", [LIM_REVEALS_DAY] = "reveals_per_day",
    [LIM_LOOKUPS] = "lookups_per_window",    [LIM_WINDOW] = "lookup_window_s",
    [LIM_ARRIVALS] = "arrivals_per_window",  [LIM_SEARCH_MAX] = "search_limit_max"};

static const char *const actions[] = {
    [GW_VIEW_OMIT] = "omit",
    [GW_VIEW_CLEAR] = "clear",
    [GW_VIEW_MASK] = "mask",
    [GW_VIEW_TOKEN] = "token",
};

/* Copies n bytes of a name for a message: printable ASCII kept, anything else '?', capped. */
static void shown(char *dst, size_t dstsz, const char *s, size_t n)
{
    size_t i, k = 0;

    for (i = 0; i < n && k + 1 < dstsz && i < NAME_SHOWN_MAX; i++)
        dst[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (i < n && k + 4 < dstsz) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = '\0';
}

/* Writes "file:line: <section> <what>: <reason>" and returns GW_EINVAL. */
static int refuse(struct parse *ps, const char *what, size_t wn, const char *reason)
{
    char w[NAME_SHOWN_MAX + 8];

    shown(w, sizeof(w), what, wn);
    if (ps->err == NULL || ps->errsz == 0)
        return GW_EINVAL;
    if (ps->section[0] != '\0' && wn > 0)
        snprintf(ps->err, ps->errsz, "%s:%u: %s %s: %s", ps->name, ps->line, ps->section, w,
                 reason);
    else if (wn > 0)
        snprintf(ps->err, ps->errsz, "%s:%u: %s: %s", ps->name, ps->line, w, reason);
    else
        snprintf(ps->err, ps->errsz, "%s:%u: %s", ps->name, ps->line, reason);
    return GW_EINVAL;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Trims spaces at both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1]))
        (*n)--;
}

static bool eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int find_role(const char *s, size_t n)
{
    for (int i = 0; gw_policy_roles[i] != NULL; i++)
        if (eq(s, n, gw_policy_roles[i]))
            return i;
    return -1;
}

static int find_field(const char *s, size_t n)
{
    for (int c = 0; c < GW_COL_COUNT; c++)
        if (eq(s, n, gw_col_field[c]))
            return c;
    return -1;
}

/* The fields a view shows as numbers: they have no masked or token rendering. */
static bool numeric_field(int c)
{
    return c == GW_COL_PICKUP_TIME || c == GW_COL_SENDER_ID_TYPE || c == GW_COL_SENDER_GENDER ||
           c == GW_COL_RECIPIENT_ID_TYPE || c == GW_COL_RECIPIENT_GENDER;
}

/* Decimal digits only, no sign, at most max. */
static int parse_number(const char *s, size_t n, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int section_line(struct parse *ps, const char *s, size_t n)
{
    const char *name = s + 1, *dot;
    size_t nn = n - 2;
    bool *seen;
    int role;

    ps->kind = SEC_NONE;
    ps->section[0] = '\0';
    if (n < 2 || s[n - 1] != ']')
        return refuse(ps, s, n, "a section line must end with ']'");
    trim(&name, &nn);
    shown(ps->section + 1, sizeof(ps->section) - 2, name, nn);
    ps->section[0] = '[';
    strcat(ps->section, "]");
    if (eq(name, nn, "levels")) {
        if (ps->seen_levels)
            return refuse(ps, "", 0, "duplicate section [levels]");
        ps->seen_levels = true;
        ps->kind = SEC_LEVELS;
        return 0;
    }
    dot = memchr(name, '.', nn);
    if (dot == NULL)
        goto unknown;
    if ((size_t)(dot - name) == 4 && memcmp(name, "view", 4) == 0)
        ps->kind = SEC_VIEW;
    else if ((size_t)(dot - name) == 6 && memcmp(name, "reveal", 6) == 0)
        ps->kind = SEC_REVEAL;
    else if ((size_t)(dot - name) == 6 && memcmp(name, "search", 6) == 0)
        ps->kind = SEC_SEARCH;
    else if ((size_t)(dot - name) == 6 && memcmp(name, "limits", 6) == 0)
        ps->kind = SEC_LIMITS;
    else
        goto unknown;
    role = find_role(dot + 1, nn - (size_t)(dot + 1 - name));
    if (role < 0) {
        ps->kind = SEC_NONE;
        ps->section[0] = '\0';
        return refuse(ps, s, n, "unknown role");
    }
    seen = ps->kind == SEC_VIEW     ? ps->seen_view
           : ps->kind == SEC_REVEAL ? ps->seen_reveal
           : ps->kind == SEC_SEARCH ? ps->seen_search
                                    : ps->seen_limits;
    if (seen[role]) {
        char msg[NAME_SHOWN_MAX + 32];
        snprintf(msg, sizeof(msg), "duplicate section %s", ps->section);
        ps->kind = SEC_NONE;
        ps->section[0] = '\0';
        return refuse(ps, "", 0, msg);
    }
    seen[role] = true;
    ps->role = role;
    if (ps->kind == SEC_LIMITS)
        ps->limits_line[role] = ps->line;
    return 0;
unknown:
    ps->kind = SEC_NONE;
    ps->section[0] = '\0';
    return refuse(ps, s, n,
                  "unknown section (expected [view.<role>], [levels], "
                  "[reveal.<role>], [search.<role>] or [limits.<role>])");
}

static int view_key(struct parse *ps, const char *k, size_t kn, const char *v, size_t vn)
{
    int c = find_field(k, kn), mode = -1;
    const char *rule;

    if (c < 0)
        return refuse(ps, k, kn, "unknown field");
    for (int m = 0; m < (int)(sizeof(actions) / sizeof(actions[0])); m++)
        if (eq(v, vn, actions[m]))
            mode = m;
    if (mode < 0)
        return refuse(ps, k, kn, "unknown action (expected clear, mask, token or omit)");
    if (ps->set_view[ps->role][c])
        return refuse(ps, k, kn, "duplicate field");
    if (numeric_field(c) && mode != GW_VIEW_CLEAR && mode != GW_VIEW_OMIT)
        return refuse(ps, k, kn, "a numeric field takes only clear or omit");
    rule =
        gw_policy_view_ceiling(gw_policy_roles[ps->role], (enum gw_col)c, (enum gw_view_mode)mode);
    if (rule != NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s exceeds the ceiling of %s: %s", actions[mode],
                 gw_policy_roles[ps->role], rule);
        return refuse(ps, k, kn, msg);
    }
    ps->set_view[ps->role][c] = true;
    ps->pol->view[ps->role][c] = (unsigned char)mode;
    return 0;
}

static int levels_key(struct parse *ps, const char *k, size_t kn, const char *v, size_t vn)
{
    int role = find_role(k, kn);
    uint32_t x;

    if (role < 0)
        return refuse(ps, k, kn, "unknown role");
    if (parse_number(v, vn, 3, &x) != 0)
        return refuse(ps, k, kn, "must be a security level 0 to 3");
    if (ps->set_level[role])
        return refuse(ps, k, kn, "duplicate role");
    ps->set_level[role] = true;
    ps->pol->level[role] = (int)x;
    return 0;
}

static int reveal_key(struct parse *ps, const char *k, size_t kn, const char *v, size_t vn)
{
    bool *grant = ps->pol->reveal[ps->role];

    if (!eq(k, kn, "fields"))
        return refuse(ps, k, kn, "unknown key (expected fields)");
    if (ps->set_reveal_fields[ps->role])
        return refuse(ps, k, kn, "duplicate key");
    ps->set_reveal_fields[ps->role] = true;
    if (vn == 0)
        return 0; /* "fields =": nothing */
    for (bool more = true; more;) {
        const char *comma = memchr(v, ',', vn);
        size_t fn = comma != NULL ? (size_t)(comma - v) : vn;
        const char *f = v;
        int c;

        more = comma != NULL;
        v += fn + more;
        vn -= fn + more;
        trim(&f, &fn);
        if (fn == 0)
            return refuse(ps, k, kn, "empty field name in the list");
        c = find_field(f, fn);
        if (c < 0) {
            char msg[NAME_SHOWN_MAX + 24];
            char w[NAME_SHOWN_MAX + 8];
            shown(w, sizeof(w), f, fn);
            snprintf(msg, sizeof(msg), "unknown field %s", w);
            return refuse(ps, k, kn, msg);
        }
        if (grant[c]) {
            char msg[NAME_SHOWN_MAX + 24];
            snprintf(msg, sizeof(msg), "duplicate field %s", gw_col_field[c]);
            return refuse(ps, k, kn, msg);
        }
        grant[c] = true;
    }
    return 0;
}

static int find_search_key(const char *s, size_t n)
{
    for (int k = 0; k < GW_POLICY_SEARCH_NKEYS; k++)
        if (eq(s, n, gw_policy_search_keys[k]))
            return k;
    return -1;
}

/* [search.<role>] keys = phone, waybill_no: the Search keys the role may use. */
static int search_key(struct parse *ps, const char *k, size_t kn, const char *v, size_t vn)
{
    bool *grant = ps->pol->search[ps->role];

    if (!eq(k, kn, "keys"))
        return refuse(ps, k, kn, "unknown key (expected keys)");
    if (ps->set_search_keys[ps->role])
        return refuse(ps, k, kn, "duplicate key");
    ps->set_search_keys[ps->role] = true;
    if (vn == 0)
        return 0; /* "keys =": none */
    for (bool more = true; more;) {
        const char *comma = memchr(v, ',', vn);
        size_t fn = comma != NULL ? (size_t)(comma - v) : vn;
        const char *f = v;
        char msg[NAME_SHOWN_MAX + 96];
        int key;

        more = comma != NULL;
        v += fn + more;
        vn -= fn + more;
        trim(&f, &fn);
        if (fn == 0)
            return refuse(ps, k, kn, "empty key name in the list");
        key = find_search_key(f, fn);
        if (key < 0) {
            char w[NAME_SHOWN_MAX + 8];
            shown(w, sizeof(w), f, fn);
            snprintf(msg, sizeof(msg),
                     "unknown search key %s (expected phone, id_number, waybill_no or "
                     "pickup_day)",
                     w);
            return refuse(ps, k, kn, msg);
        }
        if (grant[key]) {
            snprintf(msg, sizeof(msg), "duplicate search key %s", gw_policy_search_keys[key]);
            return refuse(ps, k, kn, msg);
        }
        grant[key] = true;
    }
    return 0;
}

static int limits_key(struct parse *ps, const char *k, size_t kn, const char *v, size_t vn)
{
    struct gw_policy_limits *l = &ps->pol->limits[ps->role];
    uint32_t *slot[NLIMITS] = {
        [LIM_REVEALS_HOUR] = &l->reveals_per_hour, [LIM_REVEALS_DAY] = &l->reveals_per_day,
        [LIM_LOOKUPS] = &l->lookups_per_window,    [LIM_WINDOW] = &l->lookup_window_s,
        [LIM_ARRIVALS] = &l->arrivals_per_window,  [LIM_SEARCH_MAX] = &l->search_limit_max};
    uint32_t x;

    for (int i = 0; i < NLIMITS; i++) {
        if (!eq(k, kn, limit_keys[i]))
            continue;
        if (parse_number(v, vn, NUMBER_MAX, &x) != 0)
            return refuse(ps, k, kn, "must be a whole number from 0 to 1000000000");
        if (ps->set_limit[ps->role][i])
            return refuse(ps, k, kn, "duplicate key");
        ps->set_limit[ps->role][i] = true;
        *slot[i] = x;
        return 0;
    }
    return refuse(ps, k, kn,
                  "unknown key (expected reveals_per_hour, reveals_per_day, "
                  "lookups_per_window, lookup_window_s, arrivals_per_window or "
                  "search_limit_max)");
}

static int key_line(struct parse *ps, const char *s, size_t n)
{
    const char *eqs = memchr(s, '=', n), *k = s, *v;
    size_t kn, vn;

    if (eqs == NULL)
        return refuse(ps, s, n, "expected key = value");
    kn = (size_t)(eqs - s);
    v = eqs + 1;
    vn = n - kn - 1;
    trim(&k, &kn);
    trim(&v, &vn);
    if (kn == 0)
        return refuse(ps, "", 0, "a key is missing before '='");
    switch (ps->kind) {
    case SEC_VIEW:
        return view_key(ps, k, kn, v, vn);
    case SEC_LEVELS:
        return levels_key(ps, k, kn, v, vn);
    case SEC_REVEAL:
        return reveal_key(ps, k, kn, v, vn);
    case SEC_SEARCH:
        return search_key(ps, k, kn, v, vn);
    case SEC_LIMITS:
        return limits_key(ps, k, kn, v, vn);
    case SEC_NONE:
    default:
        return refuse(ps, k, kn, "key outside a section");
    }
}

int gw_policy_parse(const char *text, size_t len, const char *name,
                    const struct gw_policy_method *extra, size_t n, struct gw_policy **out,
                    char *err, size_t errsz)
{
    struct parse *ps;
    size_t pos = 0;
    int rc = 0;

    *out = NULL;
    if (err != NULL && errsz > 0)
        err[0] = '\0';
    ps = gw_calloc(1, sizeof(*ps));
    if (ps == NULL)
        return GW_ENOMEM;
    ps->name = name != NULL ? name : "policy";
    ps->err = err;
    ps->errsz = errsz;
    ps->pol = gw_policy_alloc(extra, n);
    if (ps->pol == NULL) {
        gw_free(ps);
        return GW_ENOMEM;
    }
    while (pos < len && rc == 0) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ln = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
        const char *s = text + pos, *hash;

        pos += ln + (nl != NULL);
        ps->line++;
        if (ln > POLICY_LINE_MAX) {
            rc = refuse(ps, "", 0, "line too long");
            break;
        }
        if (memchr(s, '\0', ln) != NULL) {
            rc = refuse(ps, "", 0, "NUL byte in the file");
            break;
        }
        hash = memchr(s, '#', ln); /* a comment runs to the end of the line */
        if (hash != NULL)
            ln = (size_t)(hash - s);
        trim(&s, &ln);
        if (ln == 0 || s[0] == ';')
            continue;
        rc = s[0] == '[' ? section_line(ps, s, ln) : key_line(ps, s, ln);
    }
    /* a throttle with no window would forget every look-up (or arrival) at once: fail closed at
     * load; the two limits share the one window. A section with a window that leaves
     * arrivals_per_window out (a file written before the key) gets GW_POLICY_ARRIVALS_DEFAULT:
     * its couriers keep scanning in, bounded, where 0 would refuse every arrival after an
     * upgrade. */
    for (int r = 0; rc == 0 && gw_policy_roles[r] != NULL; r++) {
        struct gw_policy_limits *l = &ps->pol->limits[r];
        const char *limit;

        if (ps->limits_line[r] != 0 && !ps->set_limit[r][LIM_ARRIVALS] && l->lookup_window_s > 0)
            l->arrivals_per_window = GW_POLICY_ARRIVALS_DEFAULT;
        limit = l->lookups_per_window > 0    ? limit_keys[LIM_LOOKUPS]
                : l->arrivals_per_window > 0 ? limit_keys[LIM_ARRIVALS]
                                             : NULL;

        if (limit != NULL && l->lookup_window_s == 0) {
            if (err != NULL && errsz > 0)
                snprintf(err, errsz,
                         "%s:%u: [limits.%s] lookup_window_s: must be at least 1 when %s is "
                         "above 0",
                         ps->name, ps->limits_line[r], gw_policy_roles[r], limit);
            rc = GW_EINVAL;
        }
    }
    if (rc != 0) {
        gw_policy_free(ps->pol);
    } else {
        *out = ps->pol;
    }
    gw_free(ps);
    return rc;
}

int gw_policy_load(const char *path, const struct gw_policy_method *extra, size_t n,
                   struct gw_policy **out, char *err, size_t errsz)
{
    char *buf;
    size_t got;
    int rc;

    *out = NULL;
    /* whoever may write it decides who sees what: the operator only */
    rc = gw_file_read(path, POLICY_FILE_MAX, true, &buf, &got, err, errsz);
    if (rc != 0)
        return rc;
    rc = gw_policy_parse(buf, got, path, extra, n, out, err, errsz);
    gw_free(buf);
    return rc;
}

struct gw_policy *gw_policy_new(const struct gw_policy_method *extra, size_t n)
{
    struct gw_policy *p = NULL;
    char err[256];

    /* The compiled-in text is tested (test_policy.c): only allocation can fail here. */
    if (gw_policy_parse(gw_policy_default_text, gw_policy_default_len, "policy.conf (built in)",
                        extra, n, &p, err, sizeof(err)) != 0)
        return NULL;
    return p;
}
