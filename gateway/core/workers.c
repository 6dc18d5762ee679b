/* workers.c: the worker pool (workers.h): a mutex-protected FIFO of waiting jobs, N threads
 * taking from it, a list of finished jobs handed to the loop through a non-blocking pipe.
 * Invariants: a job is on at most one list; its state changes only under the mutex; whichever
 * side last holds a cancelled job (canceller, worker thread, loop) drops and frees it, exactly
 * once; done runs only on the loop and never for a cancelled job. */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>

#include "alloc.h"

enum job_state {
    JOB_QUEUED,  /* on w->queue */
    JOB_RUNNING, /* a thread runs work */
    JOB_DONE,    /* on w->finished, waiting for the loop */
};

struct gw_job {
    struct gw_workers *w;
    gw_job_fn work, done, drop;
    void *arg;
    enum job_state state;
    bool cancelled;
    struct gw_job *next;
};

struct gw_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    struct gw_job *queue, *queue_tail; /* waiting for a thread */
    unsigned queued, queue_max;
    struct gw_job *finished, *finished_tail; /* waiting for the loop */
    pthread_t *threads;
    unsigned nthreads; /* started */
    int pipe_rd, pipe_wr;
    struct event *ev;
};

static void job_drop(struct gw_job *j)
{
    if (j->drop != NULL)
        j->drop(j->arg);
    gw_free(j);
}

static void wake_loop(struct gw_workers *w)
{
    char c = 1;
    ssize_t n;

    /* A full pipe already holds a wake-up: EAGAIN is fine. */
    do
        n = write(w->pipe_wr, &c, 1);
    while (n < 0 && errno == EINTR);
}

/* Workers run under SCHED_IDLE: the kernel gives them a core only when nothing else (the loop,
 * PostgreSQL on the same host) wants it, so password hashing never delays serving; a login
 * waits instead. Where SCHED_IDLE is refused, nice +19 (the weakest normal weight) stands in. */
#define WORKER_NICE 19

static void lower_priority(void)
{
    struct sched_param sp = {.sched_priority = 0};

    /* Linux: the policy and the nice value are per thread. Best effort: a failure of both leaves
     * the default. */
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE);
}

static void *thread_main(void *arg)
{
    struct gw_workers *w = arg;
    struct gw_job *j;
    bool was_empty;

    lower_priority();
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stopping && w->queue == NULL)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stopping)
            break;
        j = w->queue;
        w->queue = j->next;
        if (w->queue == NULL)
            w->queue_tail = NULL;
        w->queued--;
        j->next = NULL;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&w->mu);

        j->work(j->arg);

        pthread_mutex_lock(&w->mu);
        if (j->cancelled) { /* the canceller left it to us */
            pthread_mutex_unlock(&w->mu);
            job_drop(j);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        j->state = JOB_DONE;
        was_empty = w->finished == NULL;
        if (w->finished_tail != NULL)
            w->finished_tail->next = j;
        else
            w->finished = j;
        w->finished_tail = j;
        if (was_empty)
            wake_loop(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Takes the first finished job off the list, or NULL. */
static struct gw_job *take_finished(struct gw_workers *w)
{
    struct gw_job *j;

    pthread_mutex_lock(&w->mu);
    j = w->finished;
    if (j != NULL) {
        w->finished = j->next;
        if (w->finished == NULL)
            w->finished_tail = NULL;
        j->next = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    return j;
}

static void finished_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_workers *w = arg;
    char buf[64];
    struct gw_job *j;

    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    /* One at a time: a done function may cancel a job that is still on the list (it is then
     * marked and dropped here when its turn comes). */
    while ((j = take_finished(w)) != NULL) {
        if (j->cancelled) {
            job_drop(j);
            continue;
        }
        j->done(j->arg);
        gw_free(j);
    }
}

struct gw_workers *gw_workers_new(struct event_base *base, unsigned nthreads, unsigned queue_max)
{
    struct gw_workers *w;
    int fds[2];

    if (base == NULL || nthreads == 0 || queue_max == 0)
        return NULL;
    w = gw_calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->pipe_rd = w->pipe_wr = -1;
    w->queue_max = queue_max;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        gw_free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        gw_free(w);
        return NULL;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        goto fail;
    w->pipe_rd = fds[0];
    w->pipe_wr = fds[1];
    w->ev = event_new(base, w->pipe_rd, EV_READ | EV_PERSIST, finished_cb, w);
    w->threads = gw_calloc(nthreads, sizeof(*w->threads));
    if (w->ev == NULL || w->threads == NULL || event_add(w->ev, NULL) != 0)
        goto fail;
    for (; w->nthreads < nthreads; w->nthreads++)
        if (pthread_create(&w->threads[w->nthreads], NULL, thread_main, w) != 0)
            goto fail;
    return w;
fail:
    gw_workers_free(w);
    return NULL;
}

void gw_workers_free(struct gw_workers *w)
{
    struct gw_job *j, *next;

    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    /* No thread runs now: what is left on the lists is ours alone. */
    for (j = w->queue; j != NULL; j = next) {
        next = j->next;
        job_drop(j);
    }
    for (j = w->finished; j != NULL; j = next) {
        next = j->next;
        job_drop(j);
    }
    if (w->ev != NULL)
        event_free(w->ev);
    if (w->pipe_rd >= 0)
        close(w->pipe_rd);
    if (w->pipe_wr >= 0)
        close(w->pipe_wr);
    gw_free(w->threads);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    gw_free(w);
}

int gw_workers_submit(struct gw_workers *w, gw_job_fn work, gw_job_fn done, gw_job_fn drop,
                      void *arg, struct gw_job **out)
{
    struct gw_job *j;

    if (out != NULL)
        *out = NULL;
    if (w == NULL || work == NULL || done == NULL)
        return GW_EINVAL;
    j = gw_calloc(1, sizeof(*j));
    if (j == NULL)
        return GW_ENOMEM;
    j->w = w;
    j->work = work;
    j->done = done;
    j->drop = drop;
    j->arg = arg;
    j->state = JOB_QUEUED;
    pthread_mutex_lock(&w->mu);
    if (w->queued >= w->queue_max || w->stopping) {
        pthread_mutex_unlock(&w->mu);
        gw_free(j);
        return GW_ETOOBIG;
    }
    if (w->queue_tail != NULL)
        w->queue_tail->next = j;
    else
        w->queue = j;
    w->queue_tail = j;
    w->queued++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (out != NULL)
        *out = j;
    return 0;
}

void gw_workers_cancel(struct gw_job *j)
{
    struct gw_workers *w;
    struct gw_job **pp, *prev = NULL;

    if (j == NULL)
        return;
    w = j->w;
    pthread_mutex_lock(&w->mu);
    if (j->state != JOB_QUEUED) {
        /* Running: the thread drops it when work returns. Finished: the loop drops it. */
        j->cancelled = true;
        pthread_mutex_unlock(&w->mu);
        return;
    }
    for (pp = &w->queue; *pp != NULL && *pp != j; pp = &(*pp)->next)
        prev = *pp;
    if (*pp == j) {
        *pp = j->next;
        if (w->queue_tail == j)
            w->queue_tail = prev;
        w->queued--;
    }
    pthread_mutex_unlock(&w->mu);
    job_drop(j);
}

unsigned gw_workers_queued(struct gw_workers *w)
{
    unsigned n;

    pthread_mutex_lock(&w->mu);
    n = w->queued;
    pthread_mutex_unlock(&w->mu);
    return n;
}
