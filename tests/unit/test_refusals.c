/* test_refusals.c: refused Admin calls' records, bounded (api/refusals.c), through a fake sink
 * that stands for the audit writer: the first GW_REFUSALS_EACH of a kind per window on their
 * own, the rest counted into one record at the window's end (its own timer); the peer does not
 * make a new kind; a record still being written when its window ends neither strands what is
 * counted meanwhile nor lets a kind have more than its share alone in a window; no room in the
 * writer's queue: counted; at shutdown, counts written as soon as nothing of their kind is; a
 * record that fails: carried, and at shutdown reported as left; one caller's kinds past its
 * share counted under its own name; kinds past the table's size counted together; freeing with
 * a record in flight cancels it; records on their own, and the records written while stopping,
 * are kept (they wait out an outage, and a drain that times out leaves them to the writer's
 * spool), and a window's record still in flight at shutdown is kept from then on. The same for a
 * refusal with no administrative-record row (a Reveal over its quota, a Search over the bulk
 * threshold: the audit record alone): bounded the same, told apart from a row's kind and by its
 * confidential mark, which its counting record keeps, spooled at shutdown as a record alone, and
 * a caller's kinds past its share counted under call.refused; a reworded reason (the purpose: the
 * caller's free text) makes no new kind. A count's kept record that failed at shutdown and was
 * not told before the writer halted (in no leftover of the writer's) is spooled by the
 * refusals' own leftover; one the writer's queue does not take while stopping is tried again
 * until the halt, then spooled. A record counting a caller's kinds past its share names each
 * object they probed with its count, as far as its bounded list holds, and how many it cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <event2/event.h>

#include "refusals.h"

#define MAXW (GW_REFUSALS_KINDS + 8)

/* What the fake writer was given, and how it answers. */
struct fake {
    bool room;
    int write_rc;                             /* gw_acct_log_write_cb's return */
    int n;                                    /* writes taken */
    char detail[MAXW][GW_AUDIT_TEXT_MAX];     /* their records' details */
    char row_detail[MAXW][GW_AUDIT_TEXT_MAX]; /* their rows' ("" when none) */
    char actor[MAXW][64];
    char action[MAXW][32];
    char purpose[MAXW][64]; /* "-": absent */
    bool row[MAXW];         /* given an administrative-record row */
    bool conf[MAXW];        /* the record marked confidential */
    int64_t count[MAXW];
    gw_audit_done_cb done[MAXW];
    void *arg[MAXW];
    bool kept[MAXW];    /* written kept (no handle), or kept later (fake_keep) */
    bool failing[MAXW]; /* failed in the writer, not told (in none of its leftover) */
    int cancelled;
};

static struct fake fk;

static int fake_write(void *ctx, const struct gw_acct_log *l, const struct gw_audit_rec *r,
                      gw_audit_done_cb done, void *arg, void **handle)
{
    (void)ctx;
    if (fk.write_rc != 0)
        return fk.write_rc;
    assert_true(fk.n < MAXW);
    snprintf(fk.row_detail[fk.n], sizeof(fk.row_detail[0]), "%s", l != NULL ? l->detail : "");
    snprintf(fk.detail[fk.n], sizeof(fk.detail[0]), "%s", r->detail);
    snprintf(fk.actor[fk.n], sizeof(fk.actor[0]), "%s", r->actor);
    snprintf(fk.action[fk.n], sizeof(fk.action[0]), "%s", r->action);
    snprintf(fk.purpose[fk.n], sizeof(fk.purpose[0]), "%s", r->purpose != NULL ? r->purpose : "-");
    fk.row[fk.n] = l != NULL;
    fk.conf[fk.n] = r->confidential;
    fk.count[fk.n] = r->count;
    fk.done[fk.n] = done;
    fk.arg[fk.n] = arg;
    fk.kept[fk.n] = handle == NULL;
    if (handle != NULL)
        *handle = &fk.done[fk.n];
    fk.n++;
    return 0;
}

static void fake_cancel(void *ctx, void *handle)
{
    (void)ctx;
    (void)handle;
    fk.cancelled++;
}

static bool fake_room(void *ctx)
{
    (void)ctx;
    return fk.room;
}

static void fake_keep(void *ctx, void *handle, gw_audit_done_cb done, void *arg)
{
    ptrdiff_t i = (gw_audit_done_cb *)handle - fk.done;

    (void)ctx;
    assert_true(i >= 0 && i < fk.n);
    assert_false(fk.kept[i]);
    fk.kept[i] = true;
    fk.done[i] = done;
    fk.arg[i] = arg;
}

/* Held: a kept write of done(arg), the latest such, that is not failing. */
static bool fake_held(void *ctx, gw_audit_done_cb done, void *arg)
{
    (void)ctx;
    for (int i = fk.n - 1; i >= 0; i--)
        if (fk.kept[i] && fk.done[i] == done && fk.arg[i] == arg)
            return !fk.failing[i];
    return false;
}

static const struct gw_refusals_sink sink = {fake_write, fake_cancel, fake_room,
                                             fake_keep,  fake_held,   NULL};
static struct event_base *base;

static int setup(void **state)
{
    (void)state;
    memset(&fk, 0, sizeof(fk));
    fk.room = true;
    base = event_base_new();
    return base != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    event_base_free(base);
    return 0;
}

/* One refused call: actor over cert from peer, method refused with detail. */
static void refuse(struct gw_refusals *rf, const char *actor, const char *peer, const char *method,
                   const char *detail)
{
    struct gw_acct_log l = {.actor = actor,
                            .role = "courier",
                            .cert = actor,
                            .peer = peer,
                            .via = "grpc",
                            .action = method,
                            .outcome = "refused",
                            .detail = detail};
    struct gw_audit_rec r = {.actor = actor,
                             .role = "courier",
                             .peer = peer,
                             .cert = actor,
                             .action = "admin.refused",
                             .object = method,
                             .count = -1,
                             .outcome = "refused",
                             .detail = detail};

    gw_refusals_record(rf, &l, &r);
}

/* Ends the window (its timer: a one-second window, waited for). */
static void window_ends(void)
{
    event_base_loop(base, EVLOOP_ONCE);
}

static void each_kind_alone_then_counted(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 1);
    struct gw_refusals_stats st;

    (void)state;
    assert_non_null(rf);
    /* 100 of one kind, each from another port, and 3 of another method: 8 + 3 alone */
    for (int i = 0; i < 100; i++) {
        char peer[32];

        snprintf(peer, sizeof(peer), "127.0.0.1:%d", 40000 + i);
        refuse(rf, "courier_a", peer, "CreateAccount", "role courier: may not call this method");
    }
    for (int i = 0; i < 3; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "DisableAccount", "role courier: may not");
    assert_int_equal(fk.n, GW_REFUSALS_EACH + 3);
    for (int i = 0; i < fk.n; i++) {
        assert_int_equal(fk.count[i], -1);
        assert_true(fk.kept[i]); /* on their own: they wait out an outage */
    }
    gw_refusals_stats(rf, &st);
    assert_int_equal(st.recorded, GW_REFUSALS_EACH + 3);
    assert_int_equal(st.counted, 100 - GW_REFUSALS_EACH);
    assert_int_equal(st.kinds, 2);
    /* the window ends: one record for the counted, none for the kind recorded alone */
    window_ends();
    assert_int_equal(fk.n, GW_REFUSALS_EACH + 4);
    assert_int_equal(fk.count[fk.n - 1], 100 - GW_REFUSALS_EACH);
    assert_string_equal(fk.detail[fk.n - 1], "role courier: may not call this method [92 such "
                                             "refusals within 1 s, counted in this record]");
    assert_false(fk.kept[fk.n - 1]); /* a window's: carried to the next if it fails */
    fk.done[fk.n - 1](fk.arg[fk.n - 1], 0, 7, NULL);
    gw_refusals_stats(rf, &st);
    assert_int_equal(st.summaries, 1);
    assert_int_equal(gw_refusals_left(rf), 0);
    /* a new window: recorded alone again */
    refuse(rf, "courier_a", "127.0.0.1:2", "CreateAccount",
           "role courier: may not call this method");
    assert_int_equal(fk.n, GW_REFUSALS_EACH + 5);
    gw_refusals_free(rf);
    assert_int_equal(fk.cancelled, 0);
}

/* A summary still being written when its window ends: the kind stays, what it counts meanwhile
 * goes into the next window's record, and its refusals on their own stay at most
 * GW_REFUSALS_EACH a window, the summary's success in the middle of one included. */
static void summary_in_flight_across_windows(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 1);
    int s1, s2;

    (void)state;
    for (int i = 0; i < GW_REFUSALS_EACH + 2; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    window_ends();
    s1 = fk.n - 1; /* the record of 2, in flight */
    assert_int_equal(fk.count[s1], 2);
    /* the next window: its 8 alone, then the first record commits, then 3 more: counted */
    for (int i = 0; i < GW_REFUSALS_EACH; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    fk.done[s1](fk.arg[s1], 0, 1, NULL);
    for (int i = 0; i < 3; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    assert_int_equal(fk.n, s1 + 1 + GW_REFUSALS_EACH);
    assert_int_equal(gw_refusals_left(rf), 3);
    window_ends();
    s2 = fk.n - 1;
    assert_int_equal(fk.count[s2], 3);
    /* a window that ends while its kind's record is still in flight: what it counted is not
     * stranded once that record commits, with no refusal after it to start a window */
    for (int i = 0; i < GW_REFUSALS_EACH + 2; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    window_ends(); /* s2 still in flight: the 2 wait */
    assert_int_equal(fk.n, s2 + 1 + GW_REFUSALS_EACH);
    fk.done[s2](fk.arg[s2], 0, 2, NULL);
    window_ends();
    assert_int_equal(fk.n, s2 + 2 + GW_REFUSALS_EACH);
    assert_int_equal(fk.count[fk.n - 1], 2);
    fk.done[fk.n - 1](fk.arg[fk.n - 1], 0, 3, NULL);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

/* No room in the writer's queue (half of it taken): even the first is only counted. At shutdown
 * room is not asked for, and what is refused meanwhile is written as soon as its kind's record
 * is done. */
static void no_room_counts_and_shutdown_writes(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 60);

    (void)state;
    fk.room = false;
    for (int i = 0; i < 5; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    assert_int_equal(fk.n, 0);
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, 1);
    assert_int_equal(fk.count[0], 5);
    assert_true(fk.kept[0]);
    refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    assert_int_equal(fk.n, 1); /* its kind's record is being written */
    assert_int_equal(gw_refusals_left(rf), 7);
    fk.done[0](fk.arg[0], 0, 1, NULL);
    assert_int_equal(fk.n, 2); /* written at once: no later window */
    assert_int_equal(fk.count[1], 2);
    refuse(rf, "dev9", "127.0.0.1:1", "CreateAccount", "no"); /* a new kind while stopping */
    assert_int_equal(fk.n, 3);
    assert_int_equal(fk.count[2], 1);
    assert_true(fk.kept[1] && fk.kept[2]);
    assert_int_equal(gw_refusals_left(rf), 3);
    gw_refusals_free(rf); /* the records in flight are kept: the writer's, not cancelled */
    assert_int_equal(fk.cancelled, 0);
}

/* A record that fails, or cannot be queued, is carried into the next window: nothing dropped;
 * at shutdown it is what gw_refusals_left reports. */
static void failed_record_carried(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 1);
    struct gw_refusals_stats st;

    (void)state;
    fk.room = false;
    for (int i = 0; i < 4; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    fk.room = true;
    window_ends();
    fk.done[0](fk.arg[0], GW_EUNAVAIL, 0, NULL);                   /* the database went away */
    refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no"); /* alone: a new window */
    fk.write_rc = GW_EQUEUEFULL;                                   /* then the queue is full */
    refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no"); /* counted */
    window_ends();                                                 /* not queued: carried */
    fk.write_rc = 0;
    window_ends();
    assert_int_equal(fk.n, 3);
    assert_int_equal(fk.count[2], 5);
    fk.done[2](fk.arg[2], 0, 9, NULL);
    gw_refusals_stats(rf, &st);
    assert_int_equal(st.carried, 4 + 5);
    assert_int_equal(st.summaries, 1);
    assert_int_equal(gw_refusals_left(rf), 0);
    /* at shutdown a failure is left, and said */
    refuse(rf, "courier_a", "127.0.0.1:1", "Login", "no");
    fk.room = false;
    refuse(rf, "courier_a", "127.0.0.1:1", "Login", "no");
    gw_refusals_flush(rf);
    fk.done[fk.n - 1](fk.arg[fk.n - 1], GW_EUNAVAIL, 0, NULL);
    assert_int_equal(gw_refusals_left(rf), 1);
    gw_refusals_free(rf);
}

/* One caller's kinds past its share are counted under one record that still names it, and do
 * not push other callers' refusals out of the table. */
/* How many objects "<prefix><first + i> (1)" a detail names, in order from first. */
static int named_in(const char *detail, const char *prefix, int first)
{
    int named = 0;

    for (;;) {
        char one[96];

        snprintf(one, sizeof(one), "%s%d (1)", prefix, first + named);
        if (strstr(detail, one) == NULL)
            return named;
        named++;
    }
}

static void one_caller_has_a_share(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 60);
    struct gw_refusals_stats st;
    int named;
    char want[256];

    (void)state;
    for (int i = 0; i < GW_REFUSALS_KINDS + 10; i++) {
        char object[32];

        snprintf(object, sizeof(object), "Method%d", i);
        refuse(rf, "sysadmin", "127.0.0.1:1", object, "no");
    }
    assert_int_equal(fk.n, GW_REFUSALS_PER_CALLER);
    gw_refusals_stats(rf, &st);
    assert_int_equal(st.kinds, GW_REFUSALS_PER_CALLER + 1);
    refuse(rf, "secadmin2", "127.0.0.1:1", "DisableAccount", "no"); /* someone else: its own */
    assert_int_equal(fk.n, GW_REFUSALS_PER_CALLER + 1);
    assert_string_equal(fk.actor[fk.n - 1], "secadmin2");
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, GW_REFUSALS_PER_CALLER + 2);
    assert_string_equal(fk.actor[fk.n - 1], "sysadmin");
    assert_int_equal(fk.count[fk.n - 1], GW_REFUSALS_KINDS + 10 - GW_REFUSALS_PER_CALLER);
    /* the methods it counts named, in order, as many as the list holds; the rest counted */
    snprintf(want, sizeof(want),
             "refusals of more kinds than are told apart for one caller [%d such refusals within "
             "60 s, counted in this record; objects: admin.refused Method%d (1), ",
             GW_REFUSALS_KINDS + 10 - GW_REFUSALS_PER_CALLER, GW_REFUSALS_PER_CALLER);
    assert_memory_equal(fk.detail[fk.n - 1], want, strlen(want));
    named = named_in(fk.detail[fk.n - 1], "admin.refused Method", GW_REFUSALS_PER_CALLER);
    assert_true(named > 8);
    snprintf(want, sizeof(want), "; %d refusal(s) of objects not named (the list holds 640 bytes)]",
             GW_REFUSALS_KINDS + 10 - GW_REFUSALS_PER_CALLER - named);
    assert_non_null(strstr(fk.detail[fk.n - 1], want));
    gw_refusals_free(rf);
}

/* More kinds than the table holds (each caller's within its share): the rest counted together,
 * under no caller's name. */
static void kinds_past_the_table(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 60);
    struct gw_refusals_stats st;

    (void)state;
    fk.room = false;
    for (int i = 0; i < GW_REFUSALS_KINDS + 10; i++) {
        char actor[32];

        snprintf(actor, sizeof(actor), "dev%d", i);
        refuse(rf, actor, "127.0.0.1:1", "CreateAccount", "no");
        refuse(rf, actor, "127.0.0.1:1", "CreateAccount", "no");
    }
    gw_refusals_stats(rf, &st);
    assert_int_equal(st.kinds, GW_REFUSALS_KINDS + 1);
    assert_int_equal(st.counted, 2 * (GW_REFUSALS_KINDS + 10));
    fk.room = true;
    refuse(rf, "dev99999", "127.0.0.1:1", "CreateAccount", "no"); /* a new kind: only counted */
    assert_int_equal(fk.n, 0);
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, GW_REFUSALS_KINDS + 1);
    assert_string_equal(fk.actor[fk.n - 1], "(several)");
    assert_int_equal(fk.count[fk.n - 1], 2 * 10 + 1);
    for (int i = 0; i < fk.n; i++)
        fk.done[i](fk.arg[i], 0, i + 1, NULL);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

static struct gw_audit_rec call_rec(const char *actor, const char *object, bool confidential);

/* Past the table, the shared entry counts refusals with a row and without one together, and has
 * a row (admin_log: the admin role reads it, it has no confidential flag): the objects it names
 * (a lawful case's id, confidential) are in its audit record alone, never in its row. */
static void objects_past_the_table_not_in_the_row(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 60);
    struct gw_audit_rec r = call_rec("courier_z", "case-6f1c", true);

    (void)state;
    fk.room = false;
    for (int i = 0; i < GW_REFUSALS_KINDS; i++) {
        char actor[32];

        snprintf(actor, sizeof(actor), "dev%d", i);
        refuse(rf, actor, "127.0.0.1:1", "CreateAccount", "no");
    }
    fk.room = true;
    assert_false(gw_refusals_record(rf, NULL, &r)); /* past the table: counted */
    assert_int_equal(fk.n, 0);
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, GW_REFUSALS_KINDS + 1);
    assert_string_equal(fk.actor[fk.n - 1], "(several)");
    assert_true(fk.row[fk.n - 1]);
    assert_true(fk.conf[fk.n - 1]);
    assert_non_null(strstr(fk.detail[fk.n - 1], "; objects: reveal case-6f1c (1)"));
    assert_null(strstr(fk.row_detail[fk.n - 1], "case-6f1c"));
    assert_null(strstr(fk.row_detail[fk.n - 1], "objects"));
    for (int i = 0; i < fk.n; i++)
        fk.done[i](fk.arg[i], 0, i + 1, NULL);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

/* The record of a Reveal over its quota, as gw_api_record_refusal is given it: actor's reveal of
 * object, confidential or not. */
static struct gw_audit_rec call_rec(const char *actor, const char *object, bool confidential)
{
    return (struct gw_audit_rec){.actor = actor,
                                 .role = "courier",
                                 .peer = "127.0.0.1:5",
                                 .cert = actor,
                                 .branch = "b",
                                 .action = "reveal",
                                 .object = object,
                                 .count = 0,
                                 .purpose = "customer asked for delivery",
                                 .outcome = "refused",
                                 .detail = "reveal quota: hour",
                                 .confidential = confidential};
}

/* One such refusal, recorded without a row. Returns gw_refusals_record's answer. */
static bool refuse_call(struct gw_refusals *rf, const char *actor, const char *object,
                        bool confidential)
{
    struct gw_audit_rec r = call_rec(actor, object, confidential);

    return gw_refusals_record(rf, NULL, &r);
}

/* Refusals with no row: the first GW_REFUSALS_EACH of a kind on their own (the caller told so:
 * true), the rest counted (false) into one record at the window's end, with no row; a row's
 * kind with the same record is another kind, and so is a confidential call's, whose records,
 * on their own and counted, stay confidential. */
static void audit_only_refusals_bounded(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 1);
    struct gw_refusals_stats st;
    struct gw_acct_log l = {.actor = "courier_b",
                            .role = "courier",
                            .cert = "courier_b",
                            .peer = "127.0.0.1:5",
                            .via = "grpc",
                            .action = "Reveal",
                            .outcome = "refused",
                            .detail = "reveal quota: hour"};
    struct gw_audit_rec r = call_rec("courier_b", "w1/recipient.phone", false);
    int alone = 0, conf_alone = 0;

    (void)state;
    assert_non_null(rf);
    for (int i = 0; i < 100; i++)
        alone += refuse_call(rf, "courier_b", "w1/recipient.phone", false);
    for (int i = 0; i < 100; i++)
        conf_alone += refuse_call(rf, "courier_b", "w1/recipient.phone", true);
    assert_int_equal(alone, GW_REFUSALS_EACH);
    assert_int_equal(conf_alone, GW_REFUSALS_EACH);
    assert_true(gw_refusals_record(rf, &l, &r)); /* the same record with a row: its own kind */
    assert_int_equal(fk.n, 2 * GW_REFUSALS_EACH + 1);
    for (int i = 0; i < 2 * GW_REFUSALS_EACH; i++) {
        assert_false(fk.row[i]);
        assert_int_equal(fk.count[i], 0);
        assert_string_equal(fk.action[i], "reveal");
        assert_int_equal(fk.conf[i], i >= GW_REFUSALS_EACH);
    }
    assert_true(fk.row[fk.n - 1]);
    gw_refusals_stats(rf, &st);
    assert_int_equal(st.kinds, 3);
    assert_int_equal(st.counted, 2 * (100 - GW_REFUSALS_EACH));
    window_ends();
    assert_int_equal(fk.n, 2 * GW_REFUSALS_EACH + 3);
    for (int i = fk.n - 2; i < fk.n; i++) {
        assert_false(fk.row[i]);
        assert_string_equal(fk.action[i], "reveal");
        assert_int_equal(fk.count[i], 100 - GW_REFUSALS_EACH);
        assert_string_equal(fk.detail[i], "reveal quota: hour [92 such refusals within 1 s, "
                                          "counted in this record]");
    }
    assert_int_not_equal(fk.conf[fk.n - 2], fk.conf[fk.n - 1]); /* one of each */
    fk.done[fk.n - 2](fk.arg[fk.n - 2], 0, 1, NULL);
    fk.done[fk.n - 1](fk.arg[fk.n - 1], 0, 2, NULL);
    assert_int_equal(gw_refusals_left(rf), 0);
    /* a new window: on their own again */
    assert_true(refuse_call(rf, "courier_b", "w1/recipient.phone", false));
    gw_refusals_free(rf);
}

/* A Reveal's reason is the caller's free text: rewording it makes no new kind. 100 over-quota
 * Reveals of one object, each with another reason: the first GW_REFUSALS_EACH on their own (the
 * caller told so: true), each with its own reason, the rest counted into one record that names
 * no reason (they differ); with one reason throughout, the counting record names it. */
static void reworded_reason_same_kind(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 1);
    struct gw_refusals_stats st;
    int first = 0;

    (void)state;
    assert_non_null(rf);
    for (int i = 0; i < 100; i++) {
        struct gw_audit_rec r = call_rec("courier_d", "w3/recipient.phone", false);
        char reason[32];

        snprintf(reason, sizeof(reason), "reason %d", i);
        r.purpose = reason;
        first += gw_refusals_record(rf, NULL, &r);
    }
    assert_int_equal(first, GW_REFUSALS_EACH);
    gw_refusals_stats(rf, &st);
    assert_int_equal(st.kinds, 1);
    assert_int_equal(st.recorded, GW_REFUSALS_EACH);
    assert_int_equal(st.counted, 100 - GW_REFUSALS_EACH);
    assert_int_equal(fk.n, GW_REFUSALS_EACH);
    assert_string_equal(fk.purpose[0], "reason 0");
    assert_string_equal(fk.purpose[GW_REFUSALS_EACH - 1], "reason 7");
    window_ends();
    assert_int_equal(fk.n, GW_REFUSALS_EACH + 1);
    assert_int_equal(fk.count[fk.n - 1], 100 - GW_REFUSALS_EACH);
    assert_string_equal(fk.action[fk.n - 1], "reveal");
    assert_string_equal(fk.purpose[fk.n - 1], "-");
    fk.done[fk.n - 1](fk.arg[fk.n - 1], 0, 1, NULL);
    /* one reason throughout: the counting record names it */
    for (int i = 0; i < 20; i++)
        first += refuse_call(rf, "courier_d", "w4/recipient.phone", false);
    assert_int_equal(first, 2 * GW_REFUSALS_EACH);
    window_ends();
    assert_int_equal(fk.n, 2 * GW_REFUSALS_EACH + 2);
    assert_int_equal(fk.count[fk.n - 1], 20 - GW_REFUSALS_EACH);
    assert_string_equal(fk.purpose[fk.n - 1], "customer asked for delivery");
    fk.done[fk.n - 1](fk.arg[fk.n - 1], 0, 2, NULL);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

/* What the spool is handed at shutdown. */
struct spooled {
    int n;
    int nstmts;
    int64_t count;
    bool conf;
    char action[32];
};

static int spool_cb(void *arg, const struct gw_audit_left *e)
{
    struct spooled *sp = arg;

    sp->n++;
    sp->nstmts = e->nstmts;
    assert_int_equal(e->nrecs, 1);
    sp->count = e->recs[0].count;
    sp->conf = e->recs[0].confidential;
    snprintf(sp->action, sizeof(sp->action), "%s", e->recs[0].action);
    return 0;
}

/* At shutdown a window's record still in flight is kept from then on, and so is the record of
 * what was counted meanwhile, written once it is done; a drain that ends with them still in the
 * writer leaves them to its leftover (the spool): the refusals' own leftover visits neither and
 * counts them no longer left. */
static void shutdown_records_kept_for_the_spool(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 1);
    struct spooled sp = {0};
    uint64_t n = 0;
    int s1;

    (void)state;
    for (int i = 0; i < GW_REFUSALS_EACH + 2; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    window_ends();
    s1 = fk.n - 1; /* the record of 2, in flight, not kept */
    assert_int_equal(fk.count[s1], 2);
    assert_false(fk.kept[s1]);
    for (int i = 0; i < GW_REFUSALS_EACH + 3; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    gw_refusals_flush(rf);
    assert_true(fk.kept[s1]);                          /* kept from now on */
    assert_int_equal(fk.n, s1 + 1 + GW_REFUSALS_EACH); /* the 3 wait for it */
    fk.done[s1](fk.arg[s1], 0, 1, NULL);
    assert_int_equal(fk.n, s1 + 2 + GW_REFUSALS_EACH);
    assert_int_equal(fk.count[fk.n - 1], 3);
    assert_true(fk.kept[fk.n - 1]);
    assert_int_equal(gw_refusals_left(rf), 3);
    /* the drain timed out with it queued: the writer spools it, not the refusals' leftover */
    assert_int_equal(gw_refusals_leftover(rf, spool_cb, &sp, &n), 0);
    assert_int_equal(sp.n, 0);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
    assert_int_equal(fk.cancelled, 0);
}

/* A row-less kind's count the writer did not take is spooled as its record alone (no
 * statement), confidential as its refusals were; refusals counted for want of room are still
 * answered as the first of their kind; a caller's row-less kinds past its share are counted
 * under call.refused, with no row. */
static void audit_only_spooled_and_shared(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 60);
    struct spooled sp = {0};
    uint64_t n = 0;
    int alone = 0;

    (void)state;
    fk.room = false; /* counted, not recorded alone; still the first of their kind: what the
                      * caller raises besides (an incident) a full trail does not suppress */
    for (int i = 0; i < 5; i++)
        assert_true(refuse_call(rf, "lawful_1", "w2/recipient.phone", true));
    assert_int_equal(gw_refusals_leftover(rf, spool_cb, &sp, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(sp.n, 1);
    assert_int_equal(sp.nstmts, 0);
    assert_int_equal(sp.count, 5);
    assert_true(sp.conf);
    assert_string_equal(sp.action, "reveal");
    assert_int_equal(gw_refusals_left(rf), 0);
    fk.room = true;
    for (int i = 0; i < GW_REFUSALS_PER_CALLER + 6; i++) {
        char object[32];

        snprintf(object, sizeof(object), "w%d/recipient.phone", i);
        alone += refuse_call(rf, "courier_c", object, false);
    }
    assert_int_equal(alone, GW_REFUSALS_PER_CALLER);
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, GW_REFUSALS_PER_CALLER + 1);
    assert_string_equal(fk.action[fk.n - 1], "call.refused");
    assert_string_equal(fk.actor[fk.n - 1], "courier_c");
    assert_false(fk.row[fk.n - 1]);
    assert_int_equal(fk.count[fk.n - 1], 6);
    gw_refusals_free(rf);
}

/* Two kinds counted (no room), whose counts are written kept at shutdown. */
static struct gw_refusals *two_counted(uint32_t window_s)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, window_s);

    fk.room = false;
    for (int i = 0; i < 5; i++)
        refuse(rf, "courier_a", "127.0.0.1:1", "CreateAccount", "no");
    for (int i = 0; i < 3; i++)
        refuse(rf, "courier_b", "127.0.0.1:1", "CreateAccount", "no");
    return rf;
}

/* A count's kept record that failed while the gateway stops, its failure not told before the
 * writer halted (so in none of the writer's leftover): the refusals' leftover spools the count,
 * as it would a told failure's; the one the writer holds is left to the writer. */
static void failed_untold_at_shutdown_spooled(void **state)
{
    struct gw_refusals *rf = two_counted(60);
    struct spooled sp = {0};
    uint64_t n = 0;

    (void)state;
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, 2);
    assert_true(fk.kept[0] && fk.kept[1]);
    assert_string_equal(fk.actor[0], "courier_a");
    fk.failing[0] = true; /* its callback still to run when the writer halted */
    gw_refusals_halt(rf);
    assert_int_equal(gw_refusals_left(rf), 5 + 3);
    assert_int_equal(gw_refusals_leftover(rf, spool_cb, &sp, &n), 0);
    assert_int_equal(sp.n, 1);
    assert_int_equal(sp.count, 5);
    assert_int_equal(n, 5);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

/* A count whose record the writer's queue does not take while the gateway stops (its kept half
 * full) is tried again, and written once the queue takes it; one still not taken at the halt is
 * tried no more, and spooled. */
static void unqueued_at_shutdown_retried_then_spooled(void **state)
{
    struct gw_refusals *rf = two_counted(60);
    struct spooled sp = {0};
    uint64_t n = 0;

    (void)state;
    fk.write_rc = GW_EQUEUEFULL;
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, 0);
    event_base_loop(base, EVLOOP_ONCE); /* tried again: still full */
    assert_int_equal(fk.n, 0);
    fk.write_rc = 0; /* the drain made room */
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(fk.n, 2);
    assert_int_equal(fk.count[0] + fk.count[1], 5 + 3);
    assert_true(fk.kept[0] && fk.kept[1]);
    /* a refusal while stopping, its count not queued, then the halt */
    fk.write_rc = GW_EQUEUEFULL;
    refuse(rf, "courier_c", "127.0.0.1:1", "CreateAccount", "no");
    gw_refusals_halt(rf);
    fk.write_rc = 0;
    assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1); /* no retry pending */
    assert_int_equal(fk.n, 2);
    assert_int_equal(gw_refusals_leftover(rf, spool_cb, &sp, &n), 0);
    assert_int_equal(sp.n, 1);
    assert_int_equal(sp.count, 1);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

/* The audit writer's drain ends as soon as its queue is empty: a count its queue refused is
 * written at once when the daemon asks (gw_refusals_retry_now, before it would drain again),
 * not left to the next try, which the drain's end may come before. */
static void unqueued_at_shutdown_written_when_asked(void **state)
{
    struct gw_refusals *rf = two_counted(60);

    (void)state;
    assert_false(gw_refusals_retry_now(rf)); /* not stopping: nothing to retry */
    fk.write_rc = GW_EQUEUEFULL;
    gw_refusals_flush(rf);
    assert_int_equal(fk.n, 0);
    assert_false(gw_refusals_retry_now(rf)); /* still full: not queued, tried again later */
    assert_int_equal(fk.n, 0);
    fk.write_rc = 0; /* the drain emptied the queue */
    assert_true(gw_refusals_retry_now(rf));
    assert_int_equal(fk.n, 2); /* without running the loop: no timer waited for */
    assert_int_equal(fk.count[0] + fk.count[1], 5 + 3);
    assert_false(gw_refusals_retry_now(rf));                     /* nothing left unqueued */
    assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1); /* and no retry pending */
    for (int i = 0; i < fk.n; i++)
        fk.done[i](fk.arg[i], 0, i + 1, NULL);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

/* A caller's share of row-less kinds, each refused once: objects bidx0, bidx1, ... */
static void refuse_share(struct gw_refusals *rf, const char *actor)
{
    for (int i = 0; i < GW_REFUSALS_PER_CALLER; i++) {
        char object[32];

        snprintf(object, sizeof(object), "bidx%d", i);
        refuse_call(rf, actor, object, false);
    }
}

/* A caller's row-less refusals past its share (Searches of blind indexes, unknown ids) are
 * counted under call.refused, whose record names each object they probed and how often; what a
 * failed record named goes, with what was counted since, into the next. */
static void objects_past_the_share_named(void **state)
{
    struct gw_refusals *rf = gw_refusals_new(base, NULL, &sink, 1);
    char want[GW_AUDIT_TEXT_MAX];
    int s1;

    (void)state;
    refuse_share(rf, "courier_e");
    refuse_call(rf, "courier_e", "beyond1", false);
    refuse_call(rf, "courier_e", "beyond2", false);
    refuse_call(rf, "courier_e", "beyond1", false);
    assert_int_equal(fk.n, GW_REFUSALS_PER_CALLER);
    window_ends();
    assert_int_equal(fk.n, GW_REFUSALS_PER_CALLER + 1);
    assert_string_equal(fk.action[fk.n - 1], "call.refused");
    assert_string_equal(fk.detail[fk.n - 1],
                        "refusals of more kinds than are told apart for one caller [3 such "
                        "refusals within 1 s, counted in this record; objects: reveal beyond1 "
                        "(2), reveal beyond2 (1)]");
    /* the next window: its kinds again, and two past them while that record is in flight; it
     * fails: carried, with what was counted since, all named in the next one */
    s1 = fk.n - 1;
    refuse_share(rf, "courier_e");
    refuse_call(rf, "courier_e", "beyond3", false);
    refuse_call(rf, "courier_e", "beyond1", false);
    /* (the entry counting its other kinds is one of its share while it lives: bidx63 is one) */
    assert_int_equal(fk.n, 2 * GW_REFUSALS_PER_CALLER);
    fk.done[s1](fk.arg[s1], GW_EUNAVAIL, 0, NULL);
    window_ends();
    assert_int_equal(fk.n, 2 * GW_REFUSALS_PER_CALLER + 1);
    snprintf(want, sizeof(want),
             "refusals of more kinds than are told apart for one caller [6 such refusals within "
             "1 s, counted in this record; objects: reveal beyond1 (3), reveal beyond2 (1), "
             "reveal bidx%d (1), reveal beyond3 (1)]",
             GW_REFUSALS_PER_CALLER - 1);
    assert_string_equal(fk.detail[fk.n - 1], want);
    assert_int_equal(fk.count[fk.n - 1], 6);
    fk.done[fk.n - 1](fk.arg[fk.n - 1], 0, 1, NULL);
    assert_int_equal(gw_refusals_left(rf), 0);
    gw_refusals_free(rf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(each_kind_alone_then_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(summary_in_flight_across_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(no_room_counts_and_shutdown_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_record_carried, setup, teardown),
        cmocka_unit_test_setup_teardown(one_caller_has_a_share, setup, teardown),
        cmocka_unit_test_setup_teardown(kinds_past_the_table, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_only_refusals_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_only_spooled_and_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_records_kept_for_the_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(reworded_reason_same_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_untold_at_shutdown_spooled, setup, teardown),
        cmocka_unit_test_setup_teardown(objects_past_the_share_named, setup, teardown),
        cmocka_unit_test_setup_teardown(objects_past_the_table_not_in_the_row, setup, teardown),
        cmocka_unit_test_setup_teardown(unqueued_at_shutdown_retried_then_spooled, setup, teardown),
        cmocka_unit_test_setup_teardown(unqueued_at_shutdown_written_when_asked, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
