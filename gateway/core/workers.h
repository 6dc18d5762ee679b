/* workers.h: a small pool of threads that runs CPU-heavy jobs (password hashing) off the event
 * loop. A job's work function runs on a worker thread; its done function then runs on the loop
 * (completion is signalled through a pipe watched by a libevent event, so libevent needs no
 * thread support). The queue is bounded: a full queue refuses new jobs instead of growing. The
 * threads run under SCHED_IDLE (nice +19 where that is refused): they get a core only when the
 * loop and the database do not want it, so hashing never delays serving calls.
 *
 * Ownership of a job's argument:
 *  - done(arg) runs on the loop once work(arg) has finished, unless the job was cancelled first;
 *    from then on done owns arg.
 *  - After gw_workers_cancel() (or gw_workers_free() with the job unfinished) done never runs;
 *    drop(arg) runs exactly once instead, as soon as no thread uses arg: at once when the job
 *    had not started, on the worker thread when it was running, on the loop when it had
 *    finished. drop must therefore be thread-safe (free and wipe only).
 * The work function must not touch anything the loop owns. */
#ifndef GW_WORKERS_H
#define GW_WORKERS_H

#include "err.h"

struct event_base;
struct gw_workers;
struct gw_job;

typedef void (*gw_job_fn)(void *arg);

/* Starts nthreads (>= 1) threads and the completion event on base; queue_max (>= 1) bounds the
 * jobs waiting for a thread. Returns NULL on failure (nothing left behind). */
struct gw_workers *gw_workers_new(struct event_base *base, unsigned nthreads, unsigned queue_max);

/* Stops the pool: jobs not yet started are dropped, running jobs finish (their threads are
 * joined), finished jobs whose done has not run are dropped; no done runs from here on.
 * NULL-safe. Must not be called from a done function. */
void gw_workers_free(struct gw_workers *w);

/* Queues work(arg) with done and drop as described above (drop may be NULL when arg needs no
 * release). Returns 0 with a handle in *out (out may be NULL), GW_ETOOBIG (queue_max jobs are
 * waiting), GW_ENOMEM or GW_EINVAL; on error nothing runs and arg stays the caller's. */
int gw_workers_submit(struct gw_workers *w, gw_job_fn work, gw_job_fn done, gw_job_fn drop,
                      void *arg, struct gw_job **out) GW_MUST_CHECK;

/* Cancels a job from the loop: its done will not run; drop(arg) runs once arg is free (maybe
 * before this returns, maybe later on a worker thread). The handle is valid until done starts
 * or until this returns. */
void gw_workers_cancel(struct gw_job *job);

/* Jobs waiting for a thread now (for tests and metrics). */
unsigned gw_workers_queued(struct gw_workers *w);

#endif
