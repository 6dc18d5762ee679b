/* ctl_export.c: `waygatectl export trace FILE`: names the bulk export (Art. 37) that a leaked
 * file, or any fragment of its rows, came from, and so its requester, approver and times. A
 * sealed export file names its export in its header (docs/bulk-export-format.md); decrypted rows
 * are recognised by their watermark tags: each tagged line is checked against every export that
 * ran (the tag is keyed by the keyring's watermark key and the export id, watermark.h), so rows
 * cut from a file, reordered or mixed with rows of other exports are each traced, and an altered
 * row matches nothing. Prints ids, names of accounts and times; never a row's content. What it
 * prints of a request (purpose, legal basis, destination, names) is printed escaped (ctl_esc).
 * The names come from bulk_request, which whoever holds a database role might have written: beside
 * them it prints the audit records the gateway wrote of the request (store_export_admin.h), and
 * fails when those do not confirm the row's requester, approver and run of this export. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "crypto.h"
#include "ctl.h"
#include "ctl_admin.h"
#include "keyring.h"
#include "store_export_admin.h"
#include "watermark.h"
#include "xseal.h"

#define FILE_MAX (1024L * 1024 * 1024)

struct export
{
    uint8_t id[GW_WM_ID_LEN];
    uint8_t key[GW_WM_KEY_LEN];
    char *text[13]; /* export, request, op, requester, role, requested, approver, role, decided,
                     * run, purpose, legal basis, destination */
    int64_t count;
    size_t hits;
};

struct exports {
    struct export *v;
    size_t n, cap;
    bool oom;
};

/* What a trace found, for its record. */
struct found {
    const char *first; /* the first export named (its id text), or NULL */
    size_t exports, traced, untraced, unconfirmed;
    bool failed; /* the audit records could not be read */
};

/* What the audit chain says of one export's request against its row: an ok record by the person
 * (and role) the row names (the run's: naming this export), and an ok one naming anyone or
 * anything else. */
struct chain_check {
    const struct export *x;
    bool request, approval, run;
    bool other_request, other_approval, other_run;
};

static void export_usage(FILE *f)
{
    fprintf(f,
            "usage: waygatectl export trace FILE [--keyring PATH] [--db CONNINFO]\n"
            "  Names the bulk export a file came from: a sealed export file by its header, a\n"
            "  decrypted file or any fragment of its rows by the rows' watermark tags (each row\n"
            "  is checked against every export that ran). Prints the export, its request, who\n"
            "  requested and approved it and when, and how many rows match each export; beside\n"
            "  them, the audit chain's records of the request (chain#seq, actor), saying so when\n"
            "  they do not confirm the requester, the approver or the run of that export.\n"
            "  Exit 0: every tagged row was traced and confirmed; 1: a row matched no export,\n"
            "  nothing was traced, or the chain does not confirm an export named; 2: usage.\n"
            "  PATH defaults to $WAYGATE_KEYRING, CONNINFO to $WAYGATE_PGURI.\n");
}

static void add_cb(void *arg, const struct gw_admin_export *e)
{
    struct exports *xs = arg;
    const char *t[13] = {e->export_text,    e->request_id,   e->operation, e->requester,
                         e->requester_role, e->requested_at, e->approver,  e->approver_role,
                         e->decided_at,     e->run_at,       e->purpose,   e->legal_basis,
                         e->destination};
    struct export *x;

    if (xs->oom)
        return;
    if (xs->n == xs->cap) {
        size_t cap = xs->cap ? 2 * xs->cap : 16;
        struct export *v = gw_realloc(xs->v, cap * sizeof(*v));
        if (v == NULL) {
            xs->oom = true;
            return;
        }
        xs->v = v;
        xs->cap = cap;
    }
    x = &xs->v[xs->n];
    memset(x, 0, sizeof(*x));
    memcpy(x->id, e->export_id, GW_WM_ID_LEN);
    x->count = e->record_count;
    xs->n++;
    for (int i = 0; i < 13; i++)
        if ((x->text[i] = gw_strdup(t[i])) == NULL)
            xs->oom = true;
}

static void exports_free(struct exports *xs)
{
    for (size_t i = 0; i < xs->n; i++) {
        for (int k = 0; k < 13; k++)
            gw_free(xs->v[i].text[k]);
        gw_wipe(xs->v[i].key, sizeof(xs->v[i].key));
    }
    gw_free(xs->v);
}

static void print_export(const struct export *x, const char *how)
{
    struct ctl_esc e = {0};
    const char *t[13];

    for (int i = 0; i < 13; i++)
        t[i] = ctl_esc(&e, x->text[i]);
    printf("export %s: %s\n", t[0], how);
    printf("  request %s (%s, %" PRId64 " records selected)\n", t[1], t[2], x->count);
    printf("  requested by %s (%s) at %s\n", t[3], t[4], t[5]);
    printf("  approved by %s (%s) at %s\n", t[6], t[7], t[8]);
    printf("  run at %s\n", t[9]);
    printf("  purpose: %s\n  legal basis: %s\n", t[10], t[11]);
    if (x->text[12][0] != '\0')
        printf("  destination: %s\n", t[12]);
    ctl_esc_clear(&e);
}

static bool same(const char *actor, const char *role, const char *name, const char *name_role)
{
    return strcmp(actor, name) == 0 && strcmp(role, name_role) == 0;
}

/* Whether a bulk.run record's detail ("kind=OP export=ID rcpt=..." , api_bulk_run.c) names id. */
static bool names_export(const char *detail, const char *id)
{
    const char *p = strstr(detail, " export=");
    size_t n = strlen(id);

    if (p == NULL)
        return false;
    p += strlen(" export=");
    return strncmp(p, id, n) == 0 && (p[n] == ' ' || p[n] == '\0');
}

static void rec_cb(void *arg, const struct gw_admin_bulk_rec *r)
{
    struct chain_check *k = arg;
    const struct export *x = k->x;
    bool ok = strcmp(r->outcome, "ok") == 0;

    struct ctl_esc e = {0};

    printf("  audit %s#%" PRId64 ": %s %s by %s (%s)\n", ctl_esc(&e, r->chain), r->seq,
           ctl_esc(&e, r->action), ctl_esc(&e, r->outcome), ctl_esc(&e, r->actor),
           ctl_esc(&e, r->role));
    ctl_esc_clear(&e);
    if (!ok)
        return;
    if (strcmp(r->action, "bulk.request") == 0) {
        if (same(r->actor, r->role, x->text[3], x->text[4]))
            k->request = true;
        else
            k->other_request = true;
    } else if (strcmp(r->action, "bulk.approve") == 0) {
        if (same(r->actor, r->role, x->text[6], x->text[7]))
            k->approval = true;
        else
            k->other_approval = true;
    } else if (strcmp(r->action, "bulk.reject") == 0) {
        k->other_approval = true;
    } else if (strcmp(r->action, "bulk.run") == 0) {
        if (same(r->actor, r->role, x->text[3], x->text[4]) && names_export(r->detail, x->text[0]))
            k->run = true;
        else
            k->other_run = true;
    }
}

/* Prints the audit records of x's request and, on a line of its own, each thing of the row they
 * do not confirm. Returns false if anything is unconfirmed or the records could not be read. */
static bool confirm_export(struct gw_admin *a, const struct export *x, struct found *fd)
{
    struct chain_check k = {.x = x};
    struct ctl_esc e = {0};
    const char *t[8];
    char err[512];

    if (gw_admin_export_records(a, x->text[1], rec_cb, &k, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl export trace: the database refused: %s\n", err);
        fd->failed = true;
        return false;
    }
    for (int i = 0; i < 8; i++)
        t[i] = ctl_esc(&e, x->text[i]);
    if (!k.request || k.other_request)
        printf("  the audit chain does not confirm the request by %s (%s)\n", t[3], t[4]);
    if (!k.approval || k.other_approval)
        printf("  the audit chain does not confirm the approval by %s (%s)\n", t[6], t[7]);
    if (!k.run || k.other_run)
        printf("  the audit chain does not confirm the run of export %s by %s (%s)\n", t[0], t[3],
               t[4]);
    ctl_esc_clear(&e);
    if (k.request && !k.other_request && k.approval && !k.other_approval && k.run && !k.other_run)
        return true;
    fd->unconfirmed++;
    return false;
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0, k;

    if (f == NULL)
        return GW_EIO;
    for (;;) {
        if (n == cap) {
            uint8_t *b;
            cap = cap ? 2 * cap : 65536;
            if ((long)cap > FILE_MAX || (b = gw_realloc(buf, cap + 1)) == NULL) {
                gw_free(buf);
                fclose(f);
                return GW_ETOOBIG;
            }
            buf = b;
        }
        k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    if (ferror(f)) {
        gw_free(buf);
        fclose(f);
        return GW_EIO;
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* A sealed file: the export its header names. */
static int trace_sealed(struct gw_admin *a, struct exports *xs, const uint8_t *buf, size_t len,
                        struct found *fd)
{
    if (len < GW_XSEAL_HEADER_LEN) {
        printf("a sealed export header, cut short: no export id\n");
        return GW_CTL_FAIL;
    }
    for (size_t i = 0; i < xs->n; i++)
        if (memcmp(xs->v[i].id, buf + 8, GW_XSEAL_ID_LEN) == 0) {
            print_export(&xs->v[i], "named by the sealed file's header");
            fd->first = xs->v[i].text[0];
            fd->exports = 1;
            return confirm_export(a, &xs->v[i], fd) ? GW_CTL_OK : GW_CTL_FAIL;
        }
    printf("a sealed export file whose header names no export that ran here\n");
    return GW_CTL_FAIL;
}

/* Decrypted rows: each tagged line against every export. */
static int trace_rows(struct gw_admin *a, struct gw_crypto *cx, struct exports *xs, const char *buf,
                      size_t len, struct found *fd)
{
    size_t tagged = 0, untraced = 0, traced = 0;
    const char *p = buf, *end = buf + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        const char *row, *tag;
        size_t rowlen;
        bool hit = false;

        if (gw_wm_split(p, n, &row, &rowlen, &tag)) {
            tagged++;
            for (size_t i = 0; i < xs->n && !hit; i++)
                if (gw_wm_check(cx, xs->v[i].key, row, rowlen, tag)) {
                    xs->v[i].hits++;
                    hit = true;
                }
            hit ? traced++ : untraced++;
        }
        p += n + (nl != NULL ? 1 : 0);
    }
    printf("rows with a watermark tag: %zu; traced: %zu; matching no export: %zu\n", tagged, traced,
           untraced);
    for (size_t i = 0; i < xs->n; i++)
        if (xs->v[i].hits > 0) {
            char how[64];
            snprintf(how, sizeof(how), "%zu row%s", xs->v[i].hits, xs->v[i].hits == 1 ? "" : "s");
            print_export(&xs->v[i], how);
            confirm_export(a, &xs->v[i], fd);
            if (fd->first == NULL)
                fd->first = xs->v[i].text[0];
            fd->exports++;
        }
    fd->traced = traced;
    fd->untraced = untraced;
    return traced > 0 && untraced == 0 && fd->unconfirmed == 0 && !fd->failed ? GW_CTL_OK
                                                                              : GW_CTL_FAIL;
}

static int export_trace(const char *file, const char *keyring, const char *db)
{
    struct ctl_admin c = {0};
    struct exports xs = {0};
    struct found fd = {0};
    struct gw_keyring *kr = NULL;
    struct gw_crypto *cx = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[512], detail[160];
    bool sealed;
    int rc = GW_CTL_FAIL;

    if (read_file(file, &buf, &len) != 0) {
        fprintf(stderr, "waygatectl export trace: cannot read %s\n", file);
        return GW_CTL_FAIL;
    }
    if (gw_keyring_file_load(keyring, &kr, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl export trace: %s\n", err);
        goto out;
    }
    if ((cx = gw_crypto_new()) == NULL)
        goto out;
    rc = ctl_admin_open(&c, "export", "trace", NULL, db);
    if (rc != 0)
        goto out;
    rc = GW_CTL_FAIL;
    if (gw_admin_exports(c.a, add_cb, &xs, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl export trace: the database refused: %s\n", err);
        goto out;
    }
    if (xs.oom) {
        fprintf(stderr, "waygatectl export trace: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < xs.n; i++)
        if (gw_wm_export_key(cx, gw_keyring_watermark_key(kr), xs.v[i].id, xs.v[i].key) != 0)
            goto out;
    sealed = len >= 8 && memcmp(buf, GW_XSEAL_MAGIC, 8) == 0;
    if (sealed)
        rc = trace_sealed(c.a, &xs, buf, len, &fd);
    else
        rc = trace_rows(c.a, cx, &xs, (const char *)buf, len, &fd);
    if (fd.exports > 0)
        printf("the audit records are read as stored: `waygatectl audit verify` proves the chain "
               "itself\n");
    if (sealed)
        snprintf(detail, sizeof(detail), "sealed file: %s", fd.first ? "named" : "not named");
    else
        snprintf(detail, sizeof(detail), "%zu rows traced to %zu exports, %zu matching none",
                 fd.traced, fd.exports, fd.untraced);
    if (fd.unconfirmed > 0)
        snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail),
                 "; %zu not confirmed by the audit chain", fd.unconfirmed);
    if (ctl_admin_log(&c, fd.first,
                      rc == GW_CTL_OK                   ? "ok"
                      : fd.unconfirmed > 0 || fd.failed ? "unconfirmed"
                                                        : "untraced",
                      detail) != 0)
        rc = GW_CTL_FAIL;
out:
    exports_free(&xs);
    ctl_admin_close(&c);
    gw_crypto_free(cx);
    gw_keyring_free(kr);
    gw_free_wipe(buf, len + 1);
    return rc;
}

int gw_ctl_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"keyring", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *keyring = getenv("WAYGATE_KEYRING"), *file;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        export_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    if (strcmp(argv[1], "trace") != 0) {
        fprintf(stderr, "waygatectl export: unknown action '%s' (trace)\n", argv[1]);
        export_usage(stderr);
        return GW_CTL_USAGE;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'k':
            keyring = optarg;
            break;
        case 'h':
            export_usage(stdout);
            return GW_CTL_OK;
        default:
            export_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "waygatectl export trace: exactly one FILE is required\n");
        return GW_CTL_USAGE;
    }
    file = argv[optind];
    if (db != NULL && ctl_conninfo_check("export trace", "--db", db) != 0)
        return GW_CTL_USAGE;
    if (keyring == NULL || keyring[0] == '\0') {
        fprintf(stderr, "waygatectl export trace: --keyring or $WAYGATE_KEYRING is required\n");
        return GW_CTL_USAGE;
    }
    return export_trace(file, keyring, db);
}
