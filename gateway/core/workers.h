/* workers.h: a small pool of threads that runs CPU-heavy jobs (password hashing) off the event
 * loop, in a process of its own. A job's work function runs on one of the pool's threads in the
 * worker process, on a copy of its argument in memory shared with it; its done function then
 * runs on the loop, in the gateway, with the argument updated from that copy.
 *
 * Why a process: the kernel shares the CPU between groups of processes (autogroups: one per
 * session; cgroups) before it looks at a thread's policy, so threads of the gateway hashing
 * under SCHED_IDLE still took the gateway's group's full share from PostgreSQL and the clients
 * beside it, and Submit latency rose tenfold during a login storm. The worker process is in a
 * session of its own (the zygote's, an autogroup of its own where the kernel groups by session),
 * whose group is at nice +19, runs its threads under SCHED_IDLE (nice +19 where that is refused),
 * and, given [auth] worker_cgroup, is in that cgroup marked idle (the zygote sets all of that up
 * once, before its filter, and each process it forks inherits it): only then does a task that
 * wakes anywhere else take the core from it at once. It ignores the signals sent to whole
 * groups (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2): it ends with the gateway.
 *
 * gw_workers_new (the daemon calls it before it reads any key) forks a zygote, a child whose only
 * work is to fork worker processes when asked, and has it fork the first. Each keeps no
 * descriptor but its socket and stdio (the zygote also a pidfd per child), cannot be dumped or
 * traced, and dies with its parent. The zygote runs under a system-call filter of its own
 * (gw_sandbox_enter_zygote: it may fork, reap and use its socket, not open, connect, exec or
 * signal another process but through a pidfd), which every process it forks inherits. The worker
 * process adds its own (sandbox.h) before it takes its first job: it can compute, use its memory
 * and answer on its socket, and reach nothing outside it (sandbox.h lists what stays allowed). A
 * process the kernel refuses the filter ends before any job, and hashing is off as below, unless
 * filter_required is false (it then runs unfiltered, logged). If the worker process dies, the jobs
 * it held end (those it had finished with their result, the others with GW_EUNAVAIL) and the next
 * job submitted (at most one a second) has the zygote fork a new one: like the first, it holds
 * nothing the gateway read since the start. If the zygote is lost too (gone, or it broke its
 * protocol), no process is forked any more until the gateway restarts: a zygote forked from the
 * gateway then would hold its keys (gw_workers_hashing_off; every submit answers GW_EUNAVAIL). The
 * loop waits for the zygote's answer to a fork (a fork of a small process; 1 s at most: then that
 * submit answers GW_EUNAVAIL, as do the next ones at once, until the answer comes on the loop and
 * its process is taken; 30 s without one and the zygote is lost), and for a live worker process
 * only to kill one that broke the protocol, and in gw_workers_free. A new process lowers its
 * scheduling group before it takes jobs; without CAP_SYS_ADMIN the kernel may make that wait up to
 * 3 s (one such change per 100 ms on the whole host), and jobs submitted meanwhile wait in its
 * socket.
 *
 * Ownership of a job's argument (size bytes, copied into the shared slot at submit):
 *  - done(arg, 0) runs on the loop once work has run on the copy and the copy is back in arg;
 *    done(arg, GW_EUNAVAIL) when the worker process died before it finished (arg is as it was
 *    submitted); unless the job was cancelled first. From then on done owns arg. Idle priority
 *    means a job waits while the machine is busy: callers bound the wait (the call's deadline).
 *  - gw_workers_cancel() runs drop(arg) before it returns and done never runs.
 * The work function must use nothing but its argument (pointers in it lead to the gateway's
 * memory as it was when the pool started: the zygote's image) and must be thread-safe. The shared
 * copy is wiped when the job ends. */
#ifndef GW_WORKERS_H
#define GW_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

struct event_base;
struct gw_workers;
struct gw_job;

typedef void (*gw_job_fn)(void *arg);
typedef void (*gw_job_done_fn)(void *arg, int err);

/* Forks the worker process with nthreads (>= 1) threads. queue_max (>= 1) bounds the jobs waiting
 * for a thread, arg_max (>= 1) the size of a job's argument. cgroup (or NULL): a cgroup directory
 * ([auth] worker_cgroup) the zygote creates if missing, marks idle (cpu.idle = 1) and joins
 * before it forks the first process; a failure is logged and the processes run without it.
 * filter_required ([auth] worker_filter_required): a process whose system-call filter is refused
 * turns hashing off (gw_workers_hashing_off) instead of running unfiltered. No event loop yet:
 * call gw_workers_attach before the first submit. Returns NULL on failure (nothing left behind). */
struct gw_workers *gw_workers_new(unsigned nthreads, unsigned queue_max, size_t arg_max,
                                  const char *cgroup, bool filter_required);

/* Watches the worker process's answers on base. 0, or GW_ENOMEM / GW_EINVAL. */
int gw_workers_attach(struct gw_workers *w, struct event_base *base) GW_MUST_CHECK;

/* Stops the pool: the worker process is killed and reaped, every job not ended is dropped
 * (drop(arg)), no done runs from here on. NULL-safe. Must not be called from a done function. */
void gw_workers_free(struct gw_workers *w);

/* Queues work on a copy of arg's size bytes, with done and drop as described above (drop may be
 * NULL when arg needs no release). Returns 0 with a handle in *out (out may be NULL); GW_ETOOBIG
 * (the queue is full), GW_EUNAVAIL (no worker process, and the last one was forked less than a
 * second ago or could not be), GW_EINVAL; on error nothing runs and arg stays the caller's. */
/* The first n bytes of every job's argument are the caller's alone: a job's copy carries them to
 * the worker process, but they are not copied back when it is done, so that what the gateway
 * keeps there (its own pointers, a callback) cannot be changed by a worker process that is not
 * what it should be. 0 (the default): the whole copy comes back. */
void gw_workers_keep(struct gw_workers *w, size_t n);

int gw_workers_submit(struct gw_workers *w, gw_job_fn work, gw_job_done_fn done, gw_job_fn drop,
                      void *arg, size_t size, struct gw_job **out) GW_MUST_CHECK;

/* Cancels a job from the loop: drop(arg) runs before this returns, done never runs. The handle is
 * valid until done starts or until this returns. */
void gw_workers_cancel(struct gw_job *job);

/* Jobs waiting for a thread now, and jobs in the worker process (waiting or running). */
unsigned gw_workers_queued(const struct gw_workers *w);
unsigned gw_workers_inflight(const struct gw_workers *w);
/* Worker processes that died since the pool started (each one's jobs ended with GW_EUNAVAIL). */
unsigned long gw_workers_deaths(const struct gw_workers *w);
/* For tests: a process lost within ms of the last fork is not replaced before then (submit
 * answers GW_EUNAVAIL); 1000 unless changed. */
void gw_workers_set_respawn_ms(struct gw_workers *w, unsigned long ms);
/* For tests: a request to the zygote unanswered for ms after the wait makes it lost (30 000
 * unless changed). */
void gw_workers_set_zygote_patience_ms(struct gw_workers *w, unsigned long ms);
/* The worker process, or -1 when there is none until the next submit. */
pid_t gw_workers_pid(const struct gw_workers *w);
/* The zygote that forks worker processes, or -1 once it was lost. */
pid_t gw_workers_zygote_pid(const struct gw_workers *w);
/* Whether password hashing is off: the zygote was lost, or a process's system-call filter was
 * refused while required. No worker process is forked until the gateway restarts (every submit
 * then answers GW_EUNAVAIL). */
bool gw_workers_hashing_off(const struct gw_workers *w);
/* How the current process's cgroup step went: -1 not reported yet, 0 joined (or none asked),
 * else the errno of the step that failed (logged). */
int gw_workers_cgroup_err(const struct gw_workers *w);
/* Whether the current process runs under its system-call filter (sandbox.h): -1 not reported
 * yet, 0 it does, else the errno that kept the filter off (logged). */
int gw_workers_sandbox_err(const struct gw_workers *w);
/* The mapping shared with the worker process (for tests: nothing of a job may stay in it). */
const void *gw_workers_shared(const struct gw_workers *w, size_t *len);

#endif
