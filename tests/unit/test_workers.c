/* test_workers.c: the worker pool (workers.h) on a real event loop. The work runs in another
 * process (its own session, SCHED_IDLE threads, its autogroup at nice +19 where the kernel has
 * autogroups, not dumpable, no descriptor but its socket and stdio) on a copy of the argument,
 * and done sees the copy's result; done runs on the loop, in order for one thread; a full queue
 * refuses; cancel before start, while running and after finishing drops the argument at once
 * and never runs done; free drops every job not ended; a worker process killed in the middle
 * ends its unfinished jobs with GW_EUNAVAIL and its finished ones with their results (a done may
 * cancel another of them), and the next submit has the zygote fork a new one (holding nothing the
 * test wrote after the pool started), not before a respawn limit has passed since the last fork; a
 * lost zygote fails closed, a slow one's answer is taken when it comes; no job's bytes stay in the
 * shared memory; a cgroup that cannot be joined is reported; the process's system-call filter
 * refuses, from each of its threads, every call that reaches outside it. Work is held on a gate in
 * a page the test shares with the worker process (mapped before the pool forks). Run it under ASan
 * too: the drops are where a double free would show. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "alloc.h"
#include "sandbox.h"
#include "workers.h"

/* Shared with every worker process: mapped in main() before the first pool forks. */
struct gate {
    _Atomic int open;
    _Atomic int started;  /* work functions that have begun */
    _Atomic int finished; /* work functions that have returned */
};
static struct gate *gate;

struct item {
    int id;
    bool gated;
    /* written by work, in the worker process */
    int result;
    pid_t pid, sid;
    int policy, dumpable, fds;
    int fd_limit; /* the test's: open_fds looks below it */
    /* the test's */
    int *done_log; /* ids in done order */
    int *ndone;
    int last_err;
    struct gw_job **victim; /* done cancels *victim */
    char marker[32];
    unsigned char seen[32]; /* peek_fn: loaded_later as the worker process sees it */
};

/* What the gateway reads after the pool has started (the keyring, in the daemon). */
static unsigned char loaded_later[32];

static int drops_total;
static int errs_total; /* dones that saw an error */

static void nap(void)
{
    struct timespec ts = {0, 1000000};

    nanosleep(&ts, NULL);
}

static void work_fn(void *arg)
{
    struct item *it = arg;

    atomic_fetch_add(&gate->started, 1);
    while (it->gated && !atomic_load(&gate->open))
        nap();
    it->result = it->id * 10 + 1;
    it->pid = getpid();
    atomic_fetch_add(&gate->finished, 1);
}

/* The last word of /proc/PID/name's first line (pid 0: this process) as a number, or absent
 * when the file is missing or unreadable or that word is not a number. */
static int proc_number(pid_t pid, const char *name, int absent)
{
    char path[96], line[128], *word, *end;
    FILE *f;
    long v;

    if (pid == 0)
        snprintf(path, sizeof(path), "/proc/self/%s", name);
    else
        snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, name);
    f = fopen(path, "r");
    if (f == NULL)
        return absent;
    word = fgets(line, sizeof(line), f);
    fclose(f);
    if (word == NULL)
        return absent;
    word = strrchr(line, ' ') != NULL ? strrchr(line, ' ') + 1 : line;
    v = strtol(word, &end, 10);
    return end != word && (*end == '\n' || *end == '\0') ? (int)v : absent;
}

/* "/autogroup-N nice K" of process pid: K, or -100. */
static int autogroup_nice_of(pid_t pid)
{
    return proc_number(pid, "autogroup", -100);
}

/* /proc/PID/oom_score_adj, or -10000. */
static int oom_score_adj_of(pid_t pid)
{
    return proc_number(pid, "oom_score_adj", -10000);
}

static int autogroup_nice(void)
{
    return autogroup_nice_of(0);
}

/* The descriptors open in this process below limit (inside the worker process, which may not
 * open /proc/self/fd: fcntl on each number). */
static int open_fds(int limit)
{
    int n = 0;

    for (int fd = 0; fd < limit; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

/* Where descriptor fd of process pid leads ("" when it is not open). */
static const char *fd_target(pid_t pid, int fd, char *buf, size_t size)
{
    char path[64];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%ld/fd/%d", (long)pid, fd);
    n = readlink(path, buf, size - 1);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

/* This process's descriptor limit, at most 2^20 (what open_fds looks below). */
static int fd_limit(void)
{
    struct rlimit lim;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &lim), 0);
    return lim.rlim_cur < (1u << 20) ? (int)lim.rlim_cur : 1 << 20;
}

static void probe_fn(void *arg)
{
    struct item *it = arg;

    it->pid = getpid();
    it->sid = getsid(0);
    it->policy = sched_getscheduler(0); /* Linux: the calling thread's policy */
    it->dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    it->fds = open_fds(it->fd_limit);
}

static void done_fn(void *arg, int err)
{
    struct item *it = arg;

    it->done_log[(*it->ndone)++] = it->id;
    if (err != 0)
        errs_total++;
    if (it->victim != NULL)
        gw_workers_cancel(*it->victim);
    gw_free(it);
}

/* done for items the test keeps: records, frees nothing */
static void keep_done_fn(void *arg, int err)
{
    struct item *it = arg;

    it->last_err = err;
    (*it->ndone)++;
}

static void drop_fn(void *arg)
{
    drops_total++;
    gw_free(arg);
}

static void reset(void)
{
    atomic_store(&gate->open, 0);
    atomic_store(&gate->started, 0);
    atomic_store(&gate->finished, 0);
    drops_total = 0;
    errs_total = 0;
}

static void open_gate(void)
{
    atomic_store(&gate->open, 1);
}

/* Waits until *counter reaches n; a worker that never gets there fails the test (30 s). */
static void wait_count(_Atomic int *counter, int n)
{
    for (int ms = 0; atomic_load(counter) < n; ms++) {
        if (ms > 30000)
            fail_msg("the worker process did not get there in 30 s (%d of %d)",
                     atomic_load(counter), n);
        nap();
    }
}

static void wait_started(int n)
{
    wait_count(&gate->started, n);
}

static void wait_finished(int n)
{
    wait_count(&gate->finished, n);
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

static int submit(struct gw_workers *w, struct item *it, struct gw_job **out)
{
    return gw_workers_submit(w, work_fn, done_fn, drop_fn, it, sizeof(*it), out);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop (each turn blocks until an event) until done() says so; a loop that gets no
 * further in 30 s fails the test instead of hanging it. */
static void run_while(struct event_base *base, bool (*done)(const void *), const void *arg)
{
    struct timeval limit = {30, 0};
    bool expired = false;
    struct event *ev = evtimer_new(base, deadline_cb, &expired);

    assert_non_null(ev);
    assert_int_equal(evtimer_add(ev, &limit), 0);
    while (!done(arg) && !expired)
        assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
    event_free(ev);
    if (expired)
        fail_msg("the worker pool did not get there in 30 s");
}

struct count_goal {
    const int *n;
    int want;
};

static bool count_reached(const void *arg)
{
    const struct count_goal *g = arg;

    return *g->n >= g->want;
}

static bool pool_idle(const void *arg)
{
    return gw_workers_inflight(arg) == 0;
}

/* Runs the loop until *ndone reaches want. */
static void run_until(struct event_base *base, const int *ndone, int want)
{
    struct count_goal g = {ndone, want};

    run_while(base, count_reached, &g);
}

/* Runs the loop until the worker process has answered every job. */
static void run_until_idle(struct event_base *base, struct gw_workers *w)
{
    run_while(base, pool_idle, w);
}

static struct gw_workers *pool(struct event_base *base, unsigned threads, unsigned queue)
{
    struct gw_workers *w = gw_workers_new(threads, queue, sizeof(struct item), NULL, true);

    assert_non_null(w);
    assert_int_equal(gw_workers_attach(w, base), 0);
    return w;
}

static bool process_gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Waits until the worker process pid has exited (a zombie, or already reaped by the zygote);
 * 30 s at most. */
static void wait_exited(pid_t pid)
{
    char path[64], state = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    for (int ms = 0; state != 'Z'; ms++) {
        if (ms > 30000)
            fail_msg("process %ld did not exit in 30 s", (long)pid);
        f = fopen(path, "r");
        if (f == NULL)
            return; /* reaped */
        if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
            state = 0;
        fclose(f);
        if (state != 'Z')
            nap();
    }
}

/* Does the shared mapping hold these bytes anywhere? */
static bool shared_holds(const struct gw_workers *w, const void *bytes, size_t n)
{
    size_t len;
    const unsigned char *p = gw_workers_shared(w, &len);

    return memmem(p, len, bytes, n) != NULL;
}

static void test_done_on_loop_in_order(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 8);
    int log[8], ndone = 0;

    (void)state;
    reset();
    for (int i = 0; i < 5; i++)
        assert_int_equal(submit(w, item(i, false, log, &ndone), NULL), 0);
    run_until(base, &ndone, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log[i], i);
    assert_int_equal(errs_total, 0);
    assert_int_equal(drops_total, 0);
    assert_int_equal(gw_workers_inflight(w), 0);
    gw_workers_free(w);
    event_base_free(base);
}

/* The work ran elsewhere, on a copy: its result comes back into the caller's argument. */
static void test_result_comes_back(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 2, 4);
    struct item it;
    int ndone = 0;

    (void)state;
    reset();
    memset(&it, 0, sizeof(it));
    it.id = 7;
    it.ndone = &ndone;
    assert_int_equal(gw_workers_submit(w, work_fn, keep_done_fn, NULL, &it, sizeof(it), NULL), 0);
    assert_int_equal(it.result, 0); /* not here: in the worker process's copy */
    run_until(base, &ndone, 1);
    assert_int_equal(it.last_err, 0);
    assert_int_equal(it.result, 71);
    assert_int_equal(it.pid, gw_workers_pid(w));
    assert_int_not_equal(it.pid, getpid());
    gw_workers_free(w);
    event_base_free(base);
}

/* The caller's prefix (gw_workers_keep) goes to the worker process but never comes back: a work
 * function that writes there (as a worker process that is not what it should be could) changes
 * nothing of it, while what follows comes back. */
static void test_kept_prefix_not_copied_back(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 2, 4);
    struct item it;
    int ndone = 0;

    (void)state;
    reset();
    gw_workers_keep(w, offsetof(struct item, result) + sizeof(it.result));
    memset(&it, 0, sizeof(it));
    it.id = 7; /* the work reads it from the prefix, and writes result, the prefix's last field */
    it.ndone = &ndone;
    assert_int_equal(gw_workers_submit(w, work_fn, keep_done_fn, NULL, &it, sizeof(it), NULL), 0);
    run_until(base, &ndone, 1);
    assert_int_equal(it.last_err, 0);
    assert_int_equal(it.result, 0);              /* kept: the worker's 71 did not come back */
    assert_int_equal(it.pid, gw_workers_pid(w)); /* after the prefix: back */
    gw_workers_free(w);
    event_base_free(base);
}

/* Hashing must not compete with the loop, or with what runs beside the gateway, for a core. */
static void test_worker_process_yields_and_holds_nothing(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    struct item it;
    int ndone = 0, mine = autogroup_nice();

    (void)state;
    memset(&it, 0, sizeof(it));
    it.ndone = &ndone;
    it.fd_limit = fd_limit();
    assert_int_equal(gw_workers_submit(w, probe_fn, keep_done_fn, NULL, &it, sizeof(it), NULL), 0);
    run_until(base, &ndone, 1);
    assert_int_equal(it.last_err, 0);
    assert_int_equal(it.pid, gw_workers_pid(w));
    /* a session (and so an autogroup) of its own, the zygote's: not the gateway's */
    assert_int_equal(it.sid, gw_workers_zygote_pid(w));
    assert_int_not_equal(it.sid, getsid(0));
    assert_int_equal(it.policy, SCHED_IDLE);
    assert_int_equal(it.dumpable, 0);
    assert_int_equal(it.fds, 4);     /* stdio and its socket */
    for (int fd = 0; fd < 3; fd++) { /* stdio leads nowhere (stderr: the sanitizer's, if any) */
        char target[64];

        if (fd < 2 || !gw_sandbox_keeps_stderr())
            assert_string_equal(fd_target(it.pid, fd, target, sizeof(target)), "/dev/null");
    }
    assert_int_equal(oom_score_adj_of(it.pid), 1000); /* the OOM killer's first choice */
    /* Where the kernel groups by session, that group is the weakest; checked as root only (the
     * kernel rate-limits the change for others, and the process carries on without it). */
    if (mine != -100 && geteuid() == 0)
        assert_int_equal(autogroup_nice_of(it.pid), 19);
    assert_int_not_equal(sched_getscheduler(0), SCHED_IDLE); /* the loop's thread is unchanged */
    assert_int_equal(autogroup_nice(), mine);
    gw_workers_free(w);
    event_base_free(base);
}

static void test_queue_full_refused(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 2);
    int log[8], ndone = 0;
    struct item *extra;

    (void)state;
    reset();
    /* one running (held at the gate) and two waiting fill a pool of one thread, queue 2 */
    assert_int_equal(submit(w, item(0, true, log, &ndone), NULL), 0);
    wait_started(1);
    for (int i = 1; i <= 2; i++)
        assert_int_equal(submit(w, item(i, true, log, &ndone), NULL), 0);
    assert_int_equal(gw_workers_queued(w), 2);
    assert_int_equal(gw_workers_inflight(w), 3);
    extra = item(3, true, log, &ndone);
    assert_int_equal(submit(w, extra, NULL), GW_ETOOBIG);
    gw_free(extra); /* refused: still ours */
    open_gate();
    run_until(base, &ndone, 3);
    assert_int_equal(drops_total, 0);
    gw_workers_free(w);
    event_base_free(base);
}

static void test_cancel_queued(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *job;

    (void)state;
    reset();
    assert_int_equal(submit(w, item(0, true, log, &ndone), NULL), 0);
    wait_started(1);
    assert_int_equal(submit(w, item(1, true, log, &ndone), &job), 0);
    gw_workers_cancel(job);
    assert_int_equal(drops_total, 1); /* at once */
    assert_int_equal(gw_workers_queued(w), 0);
    open_gate();
    run_until(base, &ndone, 1);
    assert_int_equal(log[0], 0);
    run_until_idle(base, w);                          /* the cancelled one's slot comes back too */
    assert_int_equal(atomic_load(&gate->started), 1); /* it never ran */
    gw_workers_free(w);
    event_base_free(base);
    assert_int_equal(ndone, 1); /* the cancelled job's done never ran */
}

static void test_cancel_running(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *job;

    (void)state;
    reset();
    assert_int_equal(submit(w, item(0, true, log, &ndone), &job), 0);
    wait_started(1);
    gw_workers_cancel(job); /* running: dropped at once, its answer discarded later */
    assert_int_equal(drops_total, 1);
    assert_int_equal(submit(w, item(1, false, log, &ndone), NULL), 0);
    open_gate();
    run_until(base, &ndone, 1);
    assert_int_equal(log[0], 1);
    run_until_idle(base, w);
    gw_workers_free(w);
    event_base_free(base);
    assert_int_equal(ndone, 1);
    assert_int_equal(drops_total, 1);
}

/* A done function that cancels the job finished after it. */
static void test_cancel_finished(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *victim = NULL;
    struct item *first = item(0, false, log, &ndone);

    (void)state;
    reset();
    first->victim = &victim;
    assert_int_equal(submit(w, first, NULL), 0);
    assert_int_equal(submit(w, item(1, false, log, &ndone), &victim), 0);
    wait_finished(2); /* both have run (one thread, in order) before the loop turns */
    run_until(base, &ndone, 1);
    assert_int_equal(drops_total, 1);
    run_until_idle(base, w);
    assert_int_equal(ndone, 1);
    assert_int_equal(drops_total, 1);
    gw_workers_free(w);
    event_base_free(base);
}

static void test_free_drops_everything(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 8);
    int log[8], ndone = 0;
    pid_t pid = gw_workers_pid(w), zygote = gw_workers_zygote_pid(w);

    (void)state;
    reset();
    /* one finished (its done never runs: the loop is not run), one running, two queued */
    assert_int_equal(submit(w, item(0, false, log, &ndone), NULL), 0);
    assert_int_equal(submit(w, item(1, true, log, &ndone), NULL), 0);
    wait_started(2);
    for (int i = 2; i < 4; i++)
        assert_int_equal(submit(w, item(i, true, log, &ndone), NULL), 0);
    gw_workers_free(w); /* the worker process is killed and reaped, the running job with it */
    assert_int_equal(ndone, 0);
    assert_int_equal(drops_total, 4);
    assert_true(process_gone(pid));    /* reaped by the zygote before it exits */
    assert_true(process_gone(zygote)); /* reaped by free */
    event_base_free(base);
}

/* The worker process dies with a job running and one waiting: both end with GW_EUNAVAIL, and the
 * next job runs in a new process. */
static void test_worker_process_death(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int log[8], ndone = 0, err, tries = 0;
    pid_t first = gw_workers_pid(w);
    struct item *c;

    (void)state;
    reset();
    assert_int_equal(submit(w, item(0, true, log, &ndone), NULL), 0);
    wait_started(1);
    assert_int_equal(submit(w, item(1, true, log, &ndone), NULL), 0);
    assert_int_equal(kill(first, SIGKILL), 0);
    run_until(base, &ndone, 2);
    assert_int_equal(log[0], 0);
    assert_int_equal(log[1], 1);
    assert_int_equal(errs_total, 2); /* GW_EUNAVAIL, not a result */
    assert_int_equal(drops_total, 0);
    assert_int_equal(gw_workers_inflight(w), 0);
    assert_int_equal(gw_workers_deaths(w), 1);
    assert_int_equal(gw_workers_pid(w), -1);
    for (int ms = 0; !process_gone(first); ms++) { /* reaped by the zygote */
        if (ms > 30000)
            fail_msg("the dead worker process was not reaped in 30 s");
        assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0); /* 1: nothing left to run */
        nap();
    }
    /* the next submit forks a new process, once a second has passed since the last fork */
    open_gate();
    c = item(2, false, log, &ndone);
    /* the loop runs between tries: a zygote that answered a fork after ZYGOTE_WAIT_MS is heard
     * only by a loop callback, and until then every submit is GW_EUNAVAIL (a loaded machine) */
    while ((err = submit(w, c, NULL)) == GW_EUNAVAIL && tries++ < 600) {
        assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
        usleep(50 * 1000);
    }
    assert_int_equal(err, 0);
    assert_true(gw_workers_pid(w) > 0);
    assert_int_not_equal(gw_workers_pid(w), first);
    run_until(base, &ndone, 3);
    assert_int_equal(log[2], 2);
    assert_int_equal(errs_total, 2);
    gw_workers_free(w);
    event_base_free(base);
}

static bool died_once(const void *arg)
{
    return gw_workers_deaths(arg) >= 1;
}

/* A process lost within the respawn limit of its fork is not replaced before the limit has
 * passed: submit answers GW_EUNAVAIL (a Login then gets UNAVAILABLE, "retrying is safe") and
 * forks nothing; after it, the next submit forks. The limit is set to an hour, then to none, so
 * that nothing depends on how fast this machine kills a process and the loop notices. */
static void test_respawn_limited(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int log[4], ndone = 0;
    pid_t first = gw_workers_pid(w);
    struct item *refused;

    (void)state;
    reset();
    open_gate();
    gw_workers_set_respawn_ms(w, 3600ul * 1000ul);
    assert_int_equal(kill(first, SIGKILL), 0);
    run_while(base, died_once, w); /* noticed on its socket, with no job in it */
    refused = item(0, false, log, &ndone);
    assert_int_equal(submit(w, refused, NULL), GW_EUNAVAIL);
    gw_free(refused); /* refused at submit: still the caller's */
    assert_int_equal(gw_workers_pid(w), -1);
    assert_int_equal(gw_workers_inflight(w), 0);
    gw_workers_set_respawn_ms(w, 0);
    assert_int_equal(submit(w, item(1, false, log, &ndone), NULL), 0);
    assert_true(gw_workers_pid(w) > 0);
    assert_int_not_equal(gw_workers_pid(w), first);
    run_until(base, &ndone, 1);
    assert_int_equal(log[0], 1);
    assert_int_equal(errs_total, 0);
    assert_int_equal(gw_workers_deaths(w), 1);
    gw_workers_free(w);
    event_base_free(base);
}

static void peek_fn(void *arg)
{
    struct item *it = arg;

    memcpy(it->seen, loaded_later, sizeof(it->seen));
    it->pid = getpid();
}

/* Runs peek_fn in the pool's process (forking one if needed, the respawn limit off): what that
 * process sees of loaded_later, in *it. */
static void peek(struct event_base *base, struct gw_workers *w, struct item *it)
{
    int ndone = 0;

    memset(it, 0, sizeof(*it));
    it->ndone = &ndone;
    it->last_err = -1;
    gw_workers_set_respawn_ms(w, 0);
    assert_int_equal(gw_workers_submit(w, peek_fn, keep_done_fn, NULL, it, sizeof(*it), NULL), 0);
    run_until(base, &ndone, 1);
    assert_int_equal(it->last_err, 0);
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* A worker process that replaces a lost one is forked by the zygote, which the pool forked when it
 * started: it holds none of what the gateway read since (the keyring, in the daemon), unlike a
 * fork of the gateway as it is then. The zygote is a child of the gateway, each worker process a
 * child of the zygote. */
static void test_replacement_holds_nothing_read_later(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    pid_t zygote = gw_workers_zygote_pid(w), first = gw_workers_pid(w);
    struct item it;
    char path[64];
    FILE *f;
    int ppid = 0;

    (void)state;
    reset();
    assert_true(zygote > 0 && first > 0 && zygote != first);
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)first);
    assert_non_null(f = fopen(path, "r"));
    assert_int_equal(fscanf(f, "%*d (%*[^)]) %*c %d", &ppid), 1);
    fclose(f);
    assert_int_equal(ppid, zygote);
    memset(loaded_later, 0xA5, sizeof(loaded_later));

    peek(base, w, &it); /* the first process: forked before it was read */
    assert_int_equal(it.pid, first);
    assert_true(all_zero(it.seen, sizeof(it.seen)));

    assert_int_equal(kill(first, SIGKILL), 0);
    run_while(base, died_once, w);
    peek(base, w, &it); /* its replacement */
    assert_int_not_equal(it.pid, first);
    assert_true(all_zero(it.seen, sizeof(it.seen)));
    assert_int_equal(gw_workers_zygote_pid(w), zygote);

    gw_workers_free(w);
    event_base_free(base);
    memset(loaded_later, 0, sizeof(loaded_later));
}

static bool zygote_lost(const void *arg)
{
    return gw_workers_hashing_off(arg);
}

static bool has_worker(const void *arg)
{
    return gw_workers_pid(arg) > 0;
}

/* Kills the pool's worker process and runs the loop until the pool has noticed; the respawn
 * limit off, so that the next submit asks the zygote at once. */
static void lose_worker(struct event_base *base, struct gw_workers *w)
{
    reset();
    open_gate();
    assert_int_equal(kill(gw_workers_pid(w), SIGKILL), 0);
    run_while(base, died_once, w);
    gw_workers_set_respawn_ms(w, 0);
}

/* Children of process pid, from /proc (one thread: the process's own task). */
static int children_of(pid_t pid)
{
    char path[96];
    int n = 0, c;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", (long)pid, (long)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fscanf(f, "%d", &c) == 1)
        n++;
    fclose(f);
    return n;
}

/* The zygote lost (here killed; a worker process could do it, as could anything of the gateway's
 * user): its worker process dies with it, and from then on every submit answers GW_EUNAVAIL and
 * nothing is forked, not even after the respawn limit: a zygote forked from the gateway now would
 * hold what the gateway read since it started. */
static void test_zygote_lost_fails_closed(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    pid_t zygote = gw_workers_zygote_pid(w);
    int log[4], ndone = 0;

    (void)state;
    reset();
    open_gate();
    assert_false(gw_workers_hashing_off(w));
    assert_int_equal(kill(zygote, SIGKILL), 0);
    run_while(base, zygote_lost, w); /* noticed on the loop (its pidfd), before any submit */
    run_while(base, died_once, w);   /* the worker process died with it (PR_SET_PDEATHSIG) */
    gw_workers_set_respawn_ms(w, 0);
    for (int i = 0; i < 3; i++) {
        struct item *refused = item(i, false, log, &ndone);

        assert_int_equal(submit(w, refused, NULL), GW_EUNAVAIL);
        gw_free(refused); /* refused at submit: still the caller's */
    }
    assert_true(gw_workers_hashing_off(w));
    assert_int_equal(gw_workers_zygote_pid(w), -1);
    assert_int_equal(gw_workers_pid(w), -1);
    assert_true(process_gone(zygote)); /* reaped */
    assert_int_equal(children_of(getpid()), 0);
    assert_int_equal(ndone, 0);
    gw_workers_free(w);
    event_base_free(base);
}

/* A zygote that does not answer within the wait (stopped here) costs the submit that waited
 * (GW_EUNAVAIL) and refuses the ones after it at once, without another request or another wait;
 * the zygote is kept, and once it runs again its answer arrives on the loop and that process
 * becomes the pool's: the zygote forked one process, not one per submit. */
static void test_zygote_late_answer_taken(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    pid_t zygote = gw_workers_zygote_pid(w), first = gw_workers_pid(w), late;
    struct item *refused, it;
    int log[4], ndone = 0, rc[3];

    (void)state;
    lose_worker(base, w);
    assert_int_equal(kill(zygote, SIGSTOP), 0);
    for (int i = 0; i < 3; i++) { /* the first waits, the others are refused at once */
        refused = item(i, false, log, &ndone);
        rc[i] = submit(w, refused, NULL);
        gw_free(refused);
    }
    assert_int_equal(kill(zygote, SIGCONT), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rc[i], GW_EUNAVAIL);
    assert_false(gw_workers_hashing_off(w));
    assert_int_equal(gw_workers_zygote_pid(w), zygote);
    run_while(base, has_worker, w); /* the answer, on the loop */
    late = gw_workers_pid(w);
    assert_int_not_equal(late, first);
    peek(base, w, &it);
    assert_int_equal(it.pid, late);
    for (int ms = 0; children_of(zygote) != 1; ms++) { /* the killed one reaped, no other */
        if (ms > 30000)
            fail_msg("the zygote still has %d children after 30 s", children_of(zygote));
        nap();
    }
    assert_int_equal(ndone, 0);
    gw_workers_free(w);
    event_base_free(base);
}

/* A zygote that never answers (stopped for good) is taken as lost once the request has waited
 * the zygote's patience (cut to nothing here): hashing fails closed and says so, as when it dies,
 * instead of refusing logins forever while the metric says it is on. */
static void test_zygote_never_answering_is_lost(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    pid_t zygote = gw_workers_zygote_pid(w);
    struct item *refused;
    int log[4], ndone = 0, rc;

    (void)state;
    lose_worker(base, w);
    gw_workers_set_zygote_patience_ms(w, 0);
    assert_int_equal(kill(zygote, SIGSTOP), 0);
    refused = item(0, false, log, &ndone);
    rc = submit(w, refused, NULL); /* waits, then leaves the request pending */
    gw_free(refused);
    run_while(base, zygote_lost, w);
    assert_int_equal(rc, GW_EUNAVAIL);
    assert_int_equal(gw_workers_zygote_pid(w), -1);
    assert_true(process_gone(zygote)); /* killed (stopped or not) and reaped */
    refused = item(1, false, log, &ndone);
    assert_int_equal(submit(w, refused, NULL), GW_EUNAVAIL);
    gw_free(refused);
    gw_workers_free(w);
    event_base_free(base);
}

/* With no descriptor left in the gateway, the zygote's answer arrives cut short (one of its two
 * descriptors): that submit answers GW_EUNAVAIL, the descriptor that did arrive is closed, the
 * zygote is kept, and once descriptors are free again the next submit gets a process. */
static void test_no_descriptor_left(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    pid_t zygote = gw_workers_zygote_pid(w);
    struct rlimit old, low;
    struct item *refused, it;
    int log[4], ndone = 0, fill[64], nfill = 0, before, rc;

    (void)state;
    lose_worker(base, w);
    refused = item(0, false, log, &ndone);
    before = open_fds(fd_limit());
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)before + 40;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    for (int fd; nfill < 64 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;)
        fill[nfill++] = fd;
    assert_true(nfill < 64 && errno == EMFILE);
    close(fill[--nfill]); /* exactly one left: room for one of the answer's two */
    rc = submit(w, refused, NULL);
    while (nfill > 0) /* put everything back before any assertion can end the test */
        close(fill[--nfill]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    gw_free(refused);
    assert_int_equal(rc, GW_EUNAVAIL);
    assert_int_equal(open_fds(fd_limit()), before); /* the one that arrived was closed */
    assert_false(gw_workers_hashing_off(w));
    assert_int_equal(gw_workers_zygote_pid(w), zygote);
    peek(base, w, &it);
    assert_int_equal(it.last_err, 0);
    assert_int_equal(it.pid, gw_workers_pid(w));
    gw_workers_free(w);
    event_base_free(base);
}

/* Whether descriptors 0-2 of process pid are /dev/null and 3 a socket. */
static bool stdio_null(pid_t pid)
{
    char target[64];

    for (int fd = 0; fd < 4; fd++) {
        fd_target(pid, fd, target, sizeof(target));
        if (fd < 3 ? strcmp(target, "/dev/null") != 0 : strncmp(target, "socket:", 7) != 0)
            return false;
    }
    return true;
}

/* A gateway started with stdio closed: the pool opens 0-2 on /dev/null before it makes any
 * socket, so no socket or pidfd lands there and neither helper keeps a second copy of one (a
 * process holding its own socket's other end would never see it close, never end, and fill the
 * zygote's table). Run in a child process, which reports by its exit status. */
static void test_stdio_closed(void **state)
{
    int status = -1;
    pid_t child = fork();

    (void)state;
    assert_true(child >= 0);
    if (child == 0) {
        struct event_base *base;
        struct gw_workers *w;

        close(0);
        close(1);
        close(2);
        w = gw_workers_new(1, 4, sizeof(struct item), NULL, true); /* first, as in the daemon */
        base = event_base_new();
        if (base == NULL || w == NULL || gw_workers_attach(w, base) != 0)
            _exit(10);
        if (!stdio_null(gw_workers_pid(w)))
            _exit(11);
        if (!stdio_null(gw_workers_zygote_pid(w)))
            _exit(12);
        gw_workers_free(w);
        event_base_free(base);
        _exit(0);
    }
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A done run for the death may cancel another job the death ends: that one is dropped instead. */
static void test_death_done_cancels_another(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *second = NULL;
    struct item *a = item(0, true, log, &ndone);

    (void)state;
    reset();
    a->victim = &second;
    assert_int_equal(submit(w, a, NULL), 0);
    wait_started(1);
    assert_int_equal(submit(w, item(1, true, log, &ndone), &second), 0);
    assert_int_equal(kill(gw_workers_pid(w), SIGKILL), 0);
    run_until(base, &ndone, 1);
    run_until_idle(base, w);
    assert_int_equal(ndone, 1);
    assert_int_equal(errs_total, 1);
    assert_int_equal(drops_total, 1);
    gw_workers_free(w);
    event_base_free(base);
}

/* Killed with a job finished (its answer sent, not read), one running and one whose number it
 * never read (the socket is then reset before the answer can be read): the finished one gets
 * its result, the other two GW_EUNAVAIL; a death, not a protocol fault. */
static void test_death_keeps_finished_results(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int ndone = 0;
    struct item it[3];
    pid_t pid;

    (void)state;
    reset();
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 3; i++) {
        it[i].id = i + 1;
        it[i].gated = i > 0;
        it[i].ndone = &ndone;
        it[i].last_err = -1;
        assert_int_equal(
            gw_workers_submit(w, work_fn, keep_done_fn, NULL, &it[i], sizeof(it[i]), NULL), 0);
    }
    wait_finished(1);
    wait_started(2); /* the third waits in the socket: one thread */
    pid = gw_workers_pid(w);
    assert_int_equal(kill(pid, SIGKILL), 0);
    wait_exited(pid); /* gone before the loop reads: the socket is reset, the answer queued */
    run_until(base, &ndone, 3);
    assert_int_equal(it[0].last_err, 0);
    assert_int_equal(it[0].result, 11);
    assert_int_equal(it[1].last_err, GW_EUNAVAIL);
    assert_int_equal(it[1].result, 0);
    assert_int_equal(it[2].last_err, GW_EUNAVAIL);
    assert_int_equal(gw_workers_deaths(w), 1);
    gw_workers_free(w);
    event_base_free(base);
}

/* Nothing of a job stays in the memory shared with the worker process once it has ended: done,
 * cancelled, or ended by the process's death. */
static void test_slots_wiped(void **state)
{
    static const char marker[] = "s3cret-password-marker";
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 1, 4);
    int log[8], ndone = 0;
    struct gw_job *job;
    struct item *a, *b;

    (void)state;
    reset();
    a = item(0, true, log, &ndone);
    b = item(1, true, log, &ndone);
    memcpy(a->marker, marker, sizeof(marker));
    memcpy(b->marker, marker, sizeof(marker));
    b->marker[0] = 'S';
    assert_int_equal(submit(w, a, NULL), 0);
    wait_started(1);
    assert_int_equal(submit(w, b, &job), 0);
    assert_true(shared_holds(w, marker, sizeof(marker))); /* the scan sees a live copy */
    gw_workers_cancel(job);
    open_gate();
    run_until(base, &ndone, 1);
    run_until_idle(base, w);
    assert_false(shared_holds(w, marker + 1, sizeof(marker) - 1));
    /* and after a death */
    reset();
    a = item(2, true, log, &ndone);
    memcpy(a->marker, marker, sizeof(marker));
    assert_int_equal(submit(w, a, NULL), 0);
    wait_started(1);
    assert_true(shared_holds(w, marker, sizeof(marker)));
    assert_int_equal(kill(gw_workers_pid(w), SIGKILL), 0);
    run_until(base, &ndone, 2);
    assert_false(shared_holds(w, marker + 1, sizeof(marker) - 1));
    gw_workers_free(w);
    event_base_free(base);
}

/* What a hashing process tries beyond its work (attack_fn); each entry is the errno it got, 0
 * when the call succeeded. */
enum attempt {
    TRY_KILL_ZYGOTE,  /* kill(getppid(), 0) */
    TRY_KILL_GATEWAY, /* kill(the test, 0) */
    TRY_TGKILL,       /* tgkill(the test, the test, 0) */
    TRY_PIDFD,        /* pidfd_open(the test) */
    TRY_LIMITS,       /* prlimit of the test's descriptor limit */
    TRY_OPEN,         /* open("/proc/self/status") */
    TRY_SOCKET,       /* socket(AF_INET) */
    TRY_FORK,         /* fork() */
    TRY_EXEC,         /* execve of a file that does not exist (ENOENT unfiltered) */
    TRY_SETOWN,       /* fcntl(its socket, F_SETOWN, the test): the kernel would signal it */
    TRY_THREAD,       /* pthread_create: no thread beyond those made before the filter */
    TRY_COUNT
};

struct attack {
    pid_t gateway;      /* the test's pid, set by the test */
    int err[TRY_COUNT]; /* written in the worker process */
    int policy;
    pid_t tid;
    unsigned char random[32];
    int ndone, last_err;
};

static int errno_of(long rc)
{
    return rc < 0 ? errno : 0;
}

static void *idle_thread(void *arg)
{
    return arg;
}

/* Held on the gate like work_fn, then tries what a compromised hashing process would. */
static void attack_fn(void *arg)
{
    struct attack *a = arg;
    pthread_t th;
    struct rlimit lim;
    char *const argv[] = {"waygate-none", NULL};
    pid_t pid;
    long fd;

    atomic_fetch_add(&gate->started, 1);
    while (!atomic_load(&gate->open))
        nap();
    a->tid = (pid_t)syscall(SYS_gettid);
    a->policy = sched_getscheduler(0);
    a->err[TRY_KILL_ZYGOTE] = errno_of(kill(getppid(), 0));
    a->err[TRY_KILL_GATEWAY] = errno_of(kill(a->gateway, 0));
    a->err[TRY_TGKILL] = errno_of(syscall(SYS_tgkill, a->gateway, a->gateway, 0));
    fd = syscall(SYS_pidfd_open, a->gateway, 0u);
    a->err[TRY_PIDFD] = errno_of(fd);
    if (fd >= 0)
        close((int)fd);
    a->err[TRY_LIMITS] = errno_of(prlimit(a->gateway, RLIMIT_NOFILE, NULL, &lim));
    fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    a->err[TRY_OPEN] = errno_of(fd);
    if (fd >= 0)
        close((int)fd);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a->err[TRY_SOCKET] = errno_of(fd);
    if (fd >= 0)
        close((int)fd);
    pid = fork();
    if (pid == 0)
        _exit(0);
    a->err[TRY_FORK] = errno_of(pid);
    if (pid > 0)
        (void)waitpid(pid, NULL, 0);
    a->err[TRY_EXEC] = errno_of(execve("/nonexistent/waygate-none", argv, argv + 1));
    a->err[TRY_SETOWN] = errno_of(fcntl(3, F_SETOWN, a->gateway));
    a->err[TRY_THREAD] = pthread_create(&th, NULL, idle_thread, NULL);
    if (a->err[TRY_THREAD] == 0)
        pthread_join(th, NULL);
    /* and its work still goes: memory, randomness */
    {
        size_t big = 64u << 20;
        unsigned char *p = malloc(big);

        if (p != NULL) {
            memset(p, 0xa5, big);
            a->random[0] = p[big - 1];
            free(p);
        }
        if (getrandom(a->random + 1, sizeof(a->random) - 1, 0) != (ssize_t)sizeof(a->random) - 1)
            a->random[0] = 0;
    }
    atomic_fetch_add(&gate->finished, 1);
}

static void attack_done_fn(void *arg, int err)
{
    struct attack *a = arg;

    a->last_err = err;
    a->ndone++;
}

static bool attacks_done(const void *arg)
{
    const struct attack *a = arg;

    return a[0].ndone == 1 && a[1].ndone == 1;
}

/* The line "Name:\tvalue" of /proc/PID/status, as a number; -1 when absent. */
static long status_field(pid_t pid, const char *name)
{
    char path[64], line[256];
    size_t n = strlen(name);
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, name, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* The hashing process runs under its system-call filter: both of its threads (two jobs at once)
 * are refused every call that reaches outside it, and still compute, allocate and draw random
 * bytes; the kernel reports the filter (Seccomp 2, no_new_privs) and the pool says so. */
static void test_sandbox_refuses(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w = pool(base, 2, 4);
    struct attack a[2];
    pid_t pid, zygote;

    (void)state;
    reset();
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 2; i++) {
        a[i].gateway = getpid();
        assert_int_equal(
            gw_workers_submit(w, attack_fn, attack_done_fn, NULL, &a[i], sizeof(a[i]), NULL), 0);
    }
    wait_started(2); /* two threads: the filter let the second one be created */
    open_gate();
    run_while(base, attacks_done, a);
    pid = gw_workers_pid(w);
    assert_int_equal(gw_workers_sandbox_err(w), 0);
    assert_int_equal(status_field(pid, "Seccomp"), 2); /* SECCOMP_MODE_FILTER */
    assert_int_equal(status_field(pid, "NoNewPrivs"), 1);
    /* the zygote runs under a filter of its own (unit:test_sandbox/test_zygote_each_call), and the
     * process under both: the zygote's, inherited, and its own (Linux 5.9 reports the count) */
    zygote = gw_workers_zygote_pid(w);
    assert_int_equal(status_field(zygote, "Seccomp"), 2);
    assert_int_equal(status_field(zygote, "NoNewPrivs"), 1);
    if (status_field(getpid(), "Seccomp_filters") >= 0) {
        assert_int_equal(status_field(zygote, "Seccomp_filters"),
                         status_field(getpid(), "Seccomp_filters") + 1);
        assert_int_equal(status_field(pid, "Seccomp_filters"),
                         status_field(getpid(), "Seccomp_filters") + 2);
    }
    assert_int_not_equal(a[0].tid, a[1].tid);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a[i].last_err, 0);
        for (int t = 0; t < TRY_COUNT; t++) {
            if (a[i].err[t] != EPERM)
                fail_msg("thread %d, attempt %d: errno %d, not EPERM", i, t, a[i].err[t]);
        }
        assert_int_equal(a[i].policy, SCHED_IDLE); /* inherited from the first thread */
        assert_int_equal(a[i].random[0], 0xa5);
    }
    assert_memory_not_equal(a[0].random + 1, a[1].random + 1, sizeof(a[0].random) - 1);
    assert_int_equal(kill(getpid(), 0), 0); /* the test itself can, of course */
    gw_workers_free(w);
    event_base_free(base);
}

/* A hashing process whose filter is refused (the kernel's refusal stands in for by
 * gw_sandbox_refuse_for_tests, inherited through the zygote) runs no job: it ends, hashing is off
 * (the job already sent answers GW_EUNAVAIL, every submit after it at once), and the zygote is
 * gone. */
static void test_filter_refused_turns_hashing_off(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w;
    struct item *first;
    pid_t zygote;
    int log[4], ndone = 0, rc;

    (void)state;
    reset();
    open_gate();
    gw_sandbox_refuse_for_tests(EINVAL);
    w = gw_workers_new(1, 4, sizeof(struct item), NULL, true);
    gw_sandbox_refuse_for_tests(0); /* the zygote has its copy */
    assert_non_null(w);
    wait_exited(gw_workers_pid(w)); /* on its own, before the gateway has read its hello */
    assert_int_equal(gw_workers_attach(w, base), 0);
    zygote = gw_workers_zygote_pid(w);
    first = item(0, false, log, &ndone);
    rc = submit(w, first, NULL);
    if (rc != 0) { /* the process had ended already: the send failed */
        assert_int_equal(rc, GW_EUNAVAIL);
        gw_free(first);
    }
    run_while(base, zygote_lost, w); /* its hello, read on the loop */
    if (rc == 0) {
        run_until(base, &ndone, 1);
        assert_int_equal(errs_total, 1); /* GW_EUNAVAIL: it never ran */
    }
    assert_int_equal(atomic_load(&gate->started), 0);
    assert_true(gw_workers_hashing_off(w));
    assert_int_equal(gw_workers_sandbox_err(w), EINVAL); /* why */
    assert_int_equal(gw_workers_zygote_pid(w), -1);
    assert_true(process_gone(zygote));
    gw_workers_set_respawn_ms(w, 0);
    for (int i = 1; i < 3; i++) {
        struct item *refused = item(i, false, log, &ndone);

        assert_int_equal(submit(w, refused, NULL), GW_EUNAVAIL);
        gw_free(refused);
    }
    assert_int_equal(children_of(getpid()), 0);
    gw_workers_free(w);
    event_base_free(base);
}

/* With filter_required false ([auth] worker_filter_required = false), a refused filter is reported
 * and the process runs its jobs unfiltered. */
static void test_filter_optional_runs_unfiltered(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w;
    int log[4], ndone = 0;

    (void)state;
    reset();
    gw_sandbox_refuse_for_tests(EINVAL);
    w = gw_workers_new(1, 4, sizeof(struct item), NULL, false);
    gw_sandbox_refuse_for_tests(0);
    assert_non_null(w);
    assert_int_equal(gw_workers_attach(w, base), 0);
    assert_int_equal(submit(w, item(0, false, log, &ndone), NULL), 0);
    run_until(base, &ndone, 1);
    assert_int_equal(errs_total, 0);
    assert_int_equal(gw_workers_sandbox_err(w), EINVAL);
    assert_false(gw_workers_hashing_off(w));
    assert_int_equal(status_field(gw_workers_pid(w), "Seccomp_filters"),
                     status_field(getpid(), "Seccomp_filters"));
    gw_workers_free(w);
    event_base_free(base);
}

/* A worker_cgroup the process cannot create is reported (and logged), and the pool works. */
static void test_cgroup_failure_reported(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w =
        gw_workers_new(1, 4, sizeof(struct item), "/nonexistent-waygate/work", true);
    int log[4], ndone = 0;

    (void)state;
    reset();
    assert_non_null(w);
    assert_int_equal(gw_workers_attach(w, base), 0);
    assert_int_equal(gw_workers_cgroup_err(w), -1); /* not reported yet */
    assert_int_equal(submit(w, item(0, false, log, &ndone), NULL), 0);
    run_until(base, &ndone, 1);
    assert_int_equal(gw_workers_cgroup_err(w), ENOENT);
    assert_int_equal(errs_total, 0);
    gw_workers_free(w);
    w = pool(base, 1, 4);
    assert_int_equal(submit(w, item(1, false, log, &ndone), NULL), 0);
    run_until(base, &ndone, 2);
    assert_int_equal(gw_workers_cgroup_err(w), 0); /* none asked */
    gw_workers_free(w);
    event_base_free(base);
}

static void test_bad_arguments(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_workers *w;
    struct item x;

    (void)state;
    memset(&x, 0, sizeof(x));
    assert_null(gw_workers_new(0, 4, 16, NULL, true));
    assert_null(gw_workers_new(1, 0, 16, NULL, true));
    assert_null(gw_workers_new(1, 1, 0, NULL, true));
    w = gw_workers_new(1, 1, sizeof(x), NULL, true);
    assert_non_null(w);
    /* no loop attached yet */
    assert_int_equal(gw_workers_submit(w, work_fn, done_fn, NULL, &x, sizeof(x), NULL), GW_EINVAL);
    assert_int_equal(gw_workers_attach(w, NULL), GW_EINVAL);
    assert_int_equal(gw_workers_attach(w, base), 0);
    assert_int_equal(gw_workers_attach(w, base), GW_EINVAL);
    assert_int_equal(gw_workers_submit(w, NULL, done_fn, NULL, &x, sizeof(x), NULL), GW_EINVAL);
    assert_int_equal(gw_workers_submit(w, work_fn, NULL, NULL, &x, sizeof(x), NULL), GW_EINVAL);
    assert_int_equal(gw_workers_submit(w, work_fn, done_fn, NULL, &x, 0, NULL), GW_EINVAL);
    assert_int_equal(gw_workers_submit(w, work_fn, done_fn, NULL, &x, sizeof(x) + 1, NULL),
                     GW_EINVAL);
    gw_workers_cancel(NULL);
    gw_workers_free(w);
    gw_workers_free(NULL);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_done_on_loop_in_order),
        cmocka_unit_test(test_result_comes_back),
        cmocka_unit_test(test_kept_prefix_not_copied_back),
        cmocka_unit_test(test_worker_process_yields_and_holds_nothing),
        cmocka_unit_test(test_queue_full_refused),
        cmocka_unit_test(test_cancel_queued),
        cmocka_unit_test(test_cancel_running),
        cmocka_unit_test(test_cancel_finished),
        cmocka_unit_test(test_free_drops_everything),
        cmocka_unit_test(test_worker_process_death),
        cmocka_unit_test(test_respawn_limited),
        cmocka_unit_test(test_replacement_holds_nothing_read_later),
        cmocka_unit_test(test_zygote_lost_fails_closed),
        cmocka_unit_test(test_zygote_late_answer_taken),
        cmocka_unit_test(test_zygote_never_answering_is_lost),
        cmocka_unit_test(test_stdio_closed),
        cmocka_unit_test(test_no_descriptor_left),
        cmocka_unit_test(test_death_done_cancels_another),
        cmocka_unit_test(test_death_keeps_finished_results),
        cmocka_unit_test(test_slots_wiped),
        cmocka_unit_test(test_sandbox_refuses),
        cmocka_unit_test(test_filter_refused_turns_hashing_off),
        cmocka_unit_test(test_filter_optional_runs_unfiltered),
        cmocka_unit_test(test_cgroup_failure_reported),
        cmocka_unit_test(test_bad_arguments),
    };
    void *p = mmap(NULL, sizeof(*gate), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return 1;
    gate = p;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
