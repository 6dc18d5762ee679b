/* test_workers.c: the worker pool (workers.h) on a real event loop: done runs on the loop thread
 * after work, in order for one thread; a full queue refuses; cancel before start, while running
 * (the work is held on a gate the test opens) and after finishing drops the argument exactly
 * once and never runs done; free with jobs queued, running and finished drops each once. Run it
 * under ASan too: the drops are where a double free or a leak would show. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "alloc.h"
#include "workers.h"

/* A gate that work functions wait on until the test opens it. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int started; /* work functions that have begun (under gate_mu) */

struct item {
    int id;
    bool gated;
    pthread_t worked_on;
    int *done_log; /* ids in done order */
    int *ndone;
    int *drops;
};

static void work_fn(void *arg)
{
    struct item *it = arg;

    it->worked_on = pthread_self();
    pthread_mutex_lock(&gate_mu);
    started++;
    pthread_cond_broadcast(&gate_cv);
    while (it->gated && !gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void done_fn(void *arg)
{
    struct item *it = arg;

    it->done_log[(*it->ndone)++] = it->id;
    gw_free(it);
}

static int drops_total;
static pthread_mutex_t drops_mu = PTHREAD_MUTEX_INITIALIZER;

static void drop_fn(void *arg)
{
    struct item *it = arg;

    pthread_mutex_lock(&drops_mu);
    drops_total++;
    pthread_mutex_unlock(&drops_mu);
    gw_free(it);
}

static void reset_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = false;
    started = 0;
    pthread_mutex_unlock(&gate_mu);
    pthread_mutex_lock(&drops_mu);
    drops_total = 0;
    pthread_mutex_unlock(&drops_mu);
}

static void open_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static void wait_started(int n)
{
    pthread_mutex_lock(&gate_mu);
    while (started < n)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static int drops(void)
{
    int n;

    pthread_mutex_lock(&drops_mu);
    n = drops_total;
    pthread_mutex_unlock(&drops_mu);
    return n;
}

static struct item *item(int id, bool gated, int *log, int *ndone)
{
    struct item *it = gw_calloc(1, sizeof(*it));

    assert_non_null(it);
    it->id = id;
    it->gated = gated;
    it->done_log = log;
    it->ndone = ndone;
    return it;
}

/* Runs the loop until *ndone reaches want (each turn blocks until an event). */
static void run_until(struct event_base *base, const int *ndone, int want)
{
    while (*ndone < want)
        assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
}

static void test_done_on_loop_in_order(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 1, 16);
    int log[8], ndone = 0;

    (void)state;
    reset_gate();
    assert_non_null(w);
    for (int i = 0; i < 5; i++)
        assert_int_equal(
            gw_workers_submit(w, work_fn, done_fn, drop_fn, item(i, false, log, &ndone), NULL), 0);
    assert_int_equal(ndone, 0); /* done never runs inside submit */
    run_until(base, &ndone, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log[i], i);
    assert_int_equal(drops(), 0);
    gw_workers_free(w);
    event_base_free(base);
}

static void test_work_off_loop_thread(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 2, 4);
    struct item *it;
    int log[2], ndone = 0;
    pthread_t worker;

    (void)state;
    reset_gate();
    it = item(7, false, log, &ndone);
    it->done_log = log;
    /* keep the item alive past done to look at worked_on: done frees, so copy first */
    assert_int_equal(gw_workers_submit(w, work_fn, done_fn, drop_fn, it, NULL), 0);
    wait_started(1);
    worker = it->worked_on;
    assert_false(pthread_equal(worker, pthread_self()));
    run_until(base, &ndone, 1);
    assert_int_equal(log[0], 7);
    gw_workers_free(w);
    event_base_free(base);
}

static int seen_policy = -1;

static void policy_fn(void *arg)
{
    (void)arg;
    seen_policy = sched_getscheduler(0); /* Linux: the calling thread's policy */
}

static void policy_done_fn(void *arg)
{
    *(int *)arg += 1;
}

static void policy_drop_fn(void *arg)
{
    (void)arg;
}

/* Hashing must not compete with the loop for a core: the workers run under SCHED_IDLE. */
static void test_workers_yield_to_the_loop(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 1, 4);
    int ndone = 0;

    (void)state;
    assert_int_equal(gw_workers_submit(w, policy_fn, policy_done_fn, policy_drop_fn, &ndone, NULL),
                     0);
    run_until(base, &ndone, 1);
    assert_int_equal(seen_policy, SCHED_IDLE);
    assert_int_not_equal(sched_getscheduler(0), SCHED_IDLE); /* the loop's thread is unchanged */
    gw_workers_free(w);
    event_base_free(base);
}

static void test_queue_full_refused(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 1, 2);
    int log[8], ndone = 0;
    struct item *extra;

    (void)state;
    reset_gate();
    /* one running (held at the gate) and two waiting fill a pool of one thread, queue 2 */
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(0, true, log, &ndone), NULL), 0);
    wait_started(1);
    for (int i = 1; i <= 2; i++)
        assert_int_equal(
            gw_workers_submit(w, work_fn, done_fn, drop_fn, item(i, true, log, &ndone), NULL), 0);
    assert_int_equal(gw_workers_queued(w), 2);
    extra = item(3, true, log, &ndone);
    assert_int_equal(gw_workers_submit(w, work_fn, done_fn, drop_fn, extra, NULL), GW_ETOOBIG);
    gw_free(extra); /* refused: still ours */
    open_gate();
    run_until(base, &ndone, 3);
    assert_int_equal(drops(), 0);
    gw_workers_free(w);
    event_base_free(base);
}

static void test_cancel_queued(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *job;

    (void)state;
    reset_gate();
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(0, true, log, &ndone), NULL), 0);
    wait_started(1);
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(1, true, log, &ndone), &job), 0);
    gw_workers_cancel(job);
    assert_int_equal(drops(), 1); /* not started: dropped at once */
    assert_int_equal(gw_workers_queued(w), 0);
    open_gate();
    run_until(base, &ndone, 1);
    assert_int_equal(log[0], 0);
    gw_workers_free(w);
    event_base_free(base);
    assert_int_equal(ndone, 1); /* the cancelled job's done never ran */
}

static void test_cancel_running(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *job;

    (void)state;
    reset_gate();
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(0, true, log, &ndone), &job), 0);
    wait_started(1);
    gw_workers_cancel(job); /* running: the worker thread drops it when work returns */
    assert_int_equal(drops(), 0);
    /* a later job finishing on the same (only) thread proves the cancelled one has returned */
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(1, false, log, &ndone), NULL), 0);
    open_gate();
    run_until(base, &ndone, 1);
    assert_int_equal(log[0], 1);
    assert_int_equal(drops(), 1);
    gw_workers_free(w);
    event_base_free(base);
    assert_int_equal(ndone, 1);
}

/* A done function that cancels the job finished after it (still on the finished list). */
struct canceller {
    struct item it;
    struct gw_job **victim;
};

static void done_cancel_fn(void *arg)
{
    struct canceller *c = arg;

    c->it.done_log[(*c->it.ndone)++] = c->it.id;
    gw_workers_cancel(*c->victim);
    gw_free(c);
}

static void test_cancel_finished(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *victim = NULL;
    struct canceller *c = gw_calloc(1, sizeof(*c));

    (void)state;
    reset_gate();
    assert_non_null(c);
    c->it.id = 0;
    c->it.done_log = log;
    c->it.ndone = &ndone;
    c->victim = &victim;
    /* both finish before the loop runs: the first's done cancels the second, already done */
    assert_int_equal(gw_workers_submit(w, work_fn, done_cancel_fn, drop_fn, c, NULL), 0);
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(1, false, log, &ndone), &victim), 0);
    wait_started(2);
    run_until(base, &ndone, 1);
    /* The second job was either finished (dropped by the loop in the same pass) or still running
     * (dropped by its thread when work returns): wait for that drop, whichever it is. */
    while (drops() == 0)
        usleep(1000);
    assert_int_equal(ndone, 1);
    assert_int_equal(drops(), 1);
    gw_workers_free(w);
    event_base_free(base);
}

static void test_free_drops_everything(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = gw_workers_new(base, 1, 8);
    int log[8], ndone = 0;

    (void)state;
    reset_gate();
    /* one finished (its done never runs: the loop is not run), one running, two queued */
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(0, false, log, &ndone), NULL), 0);
    assert_int_equal(
        gw_workers_submit(w, work_fn, done_fn, drop_fn, item(1, true, log, &ndone), NULL), 0);
    wait_started(2);
    for (int i = 2; i < 4; i++)
        assert_int_equal(
            gw_workers_submit(w, work_fn, done_fn, drop_fn, item(i, true, log, &ndone), NULL), 0);
    open_gate(); /* let the running one return so that free can join */
    gw_workers_free(w);
    assert_int_equal(ndone, 0);
    /* the running job finished normally (dropped as finished) or, if the gate opened before
     * the thread saw stopping, the queued ones may have run: every one is dropped exactly once */
    assert_int_equal(drops(), 4);
    event_base_free(base);
}

static void test_bad_arguments(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w;
    int x = 0;

    (void)state;
    assert_null(gw_workers_new(base, 0, 4));
    assert_null(gw_workers_new(base, 1, 0));
    assert_null(gw_workers_new(NULL, 1, 1));
    w = gw_workers_new(base, 1, 1);
    assert_int_equal(gw_workers_submit(w, NULL, done_fn, NULL, &x, NULL), GW_EINVAL);
    assert_int_equal(gw_workers_submit(w, work_fn, NULL, NULL, &x, NULL), GW_EINVAL);
    gw_workers_cancel(NULL);
    gw_workers_free(w);
    gw_workers_free(NULL);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_done_on_loop_in_order),
        cmocka_unit_test(test_work_off_loop_thread),
        cmocka_unit_test(test_workers_yield_to_the_loop),
        cmocka_unit_test(test_queue_full_refused),
        cmocka_unit_test(test_cancel_queued),
        cmocka_unit_test(test_cancel_running),
        cmocka_unit_test(test_cancel_finished),
        cmocka_unit_test(test_free_drops_everything),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
