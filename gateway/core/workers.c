/* workers.c: the worker pool (workers.h). The gateway and its worker process share one anonymous
 * mapping of slots, one per job that may be in the worker process at once (queue_max +
 * nthreads); a slot holds its state, the work function and the argument's copy. A SOCK_SEQPACKET
 * socket pair carries slot numbers: the gateway sends one per job, each of the process's threads
 * receives the next, runs the work and sends the number back.
 *
 * Invariants: a slot's state in the mapping moves FREE -> QUEUED (gateway) -> RUNNING -> DONE
 * (worker), or QUEUED -> CANCELLED (gateway, only while nobody runs it); every number sent is
 * answered exactly once by the process it was sent to, or not at all if that process dies, and
 * the gateway frees the slot (wiping the copy) on that answer or once the process is gone, never
 * earlier; only the gateway's loop touches struct gw_job, and the gateway takes nothing from the
 * mapping but a state and the copy's bytes, sized by its own record; done runs on the loop, at
 * most once, never after drop. The process's first message is its hello (setup outcome), read
 * on the loop like the answers: the loop never waits for a live process, except to kill one that
 * broke the protocol (and at free).
 *
 * Worker processes are forked by the zygote (zygote_main), the gateway's child forked by
 * gw_workers_new before the daemon reads any key: a request on its socket (its number) is answered
 * with that number and the new process's pid, or an errno, and, on success, the gateway's end of
 * the new process's socket and a pidfd (SCM_RIGHTS). One request is outstanding at most: the
 * gateway waits ZYGOTE_WAIT_MS for its answer, and one that comes later is read on the loop
 * (zygote_answer_cb) and taken. The zygote reaps its children (polling their pidfds); the
 * gateway signals a worker process only through its pidfd, reaps only the zygote and notices its
 * end through the zygote's pidfd. A zygote lost is never replaced (off): one forked then would
 * hold the gateway's keys. */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "log.h"
#include "sandbox.h"

enum slot_state {
    SLOT_FREE,
    SLOT_QUEUED,    /* sent, no thread has it yet */
    SLOT_RUNNING,   /* a thread runs work on the copy */
    SLOT_DONE,      /* work returned: the copy is the result */
    SLOT_CANCELLED, /* cancelled while queued: the thread that takes it skips it */
};

struct slot { /* in the shared mapping; the argument's copy follows at SLOT_HDR */
    _Atomic int state;
    gw_job_fn work;
};

#define SLOT_HDR ((sizeof(struct slot) + 63) & ~(size_t)63)

enum job_state {
    JOB_FREE,
    JOB_BUSY,    /* its slot number is in the worker process */
    JOB_FAILING, /* the process died: the job ends in the same pass (died) */
};

struct gw_job { /* the gateway's side of slot i: w->jobs[i] */
    struct gw_workers *w;
    enum job_state state;
    bool cancelled; /* drop has run; the slot waits for its answer */
    gw_job_done_fn done;
    gw_job_fn drop;
    void *arg;
    size_t size; /* the gateway's own copy of the size: the mapping's can be written by the child */
};

struct gw_workers {
    unsigned nthreads, nslots, queue_max, inflight;
    size_t arg_max, stride, shm_len;
    size_t keep; /* the first bytes of every argument: the caller's, never copied back */
    unsigned char *shm;
    struct gw_job *jobs;
    pid_t pid;         /* the worker process; -1: none */
    int pidfd;         /* its pidfd (from the zygote), -1 with no process */
    int sock;          /* the gateway's end of its socket, -1 with no process */
    pid_t zpid;        /* the zygote, the gateway's child that forks worker processes; -1: none */
    int zpidfd;        /* its pidfd, -1 with no zygote */
    int zsock;         /* the gateway's end of the zygote's socket, -1 with no zygote */
    uint32_t zreq;     /* the last request's number, which its answer carries */
    bool zpending;     /* that request is not answered yet: no other is sent meanwhile */
    struct event *zev; /* the zygote's answers, on the loop */
    struct event *zdeath_ev; /* its end (its pidfd), on the loop */
    struct event *zlate_ev;  /* a request unanswered this long: the zygote is lost */
    uint64_t zpatience_ms;   /* ZYGOTE_LOST_MS; tests change it */
    bool off; /* hashing is off (the zygote lost, or a required filter refused): no worker process
               * until the gateway restarts */
    struct event_base *base;
    struct event *ev;
    uint64_t spawned_ms;
    uint64_t respawn_min_ms; /* RESPAWN_MIN_MS; tests change it */
    unsigned long deaths;
    char *cgroup;         /* [auth] worker_cgroup, or NULL */
    bool hello_seen;      /* the current process's first message has come */
    int cgroup_err;       /* the last hello's: -1 none yet, 0 joined or none asked, else errno */
    int sandbox_err;      /* the last hello's: -1 none yet, 0 filtered, else errno */
    bool filter_required; /* [auth] worker_filter_required: no filter, no hashing */
    int resets;           /* ECONNRESETs seen from the current process */
};

/* The worker process's first message: how its setup went (the zygote's part of it, done once for
 * every process it forks, included). 20 bytes: never the size of an answer. */
struct hello {
    int32_t ag_err;  /* the autogroup's nice (the zygote's session): 0, or errno (ENOENT: no
                      * autogroups here) */
    int32_t cg_step; /* enum cg_step reached (the zygote joins): CG_OK when joined or none asked */
    int32_t cg_err;  /* errno of that step */
    int32_t sb_err;  /* the system-call filter: 0, or gw_sandbox_prepare's errno, else the first
                      * of any thread's gw_sandbox_enter */
    int32_t zsb_err; /* the zygote's own filter (gw_sandbox_enter_zygote): 0, or its errno */
};

enum cg_step { CG_OK, CG_MKDIR, CG_IDLE, CG_JOIN };

/* How long the loop waits for the zygote's answer, and at free for it to end. */
#define ZYGOTE_WAIT_MS 1000  /* on the loop; an answer that comes later is taken when it comes */
#define ZYGOTE_LOST_MS 30000 /* a request unanswered this long: the zygote is lost */
/* In gw_workers_new, before the loop runs: as long as a request may take before the zygote is
 * lost, so that a start on a busy machine (seen: more than 5 s at a load average of 10 on two
 * CPUs) is slow rather than a failure. A zygote that ends is noticed at once (Z_LOST). */
#define ZYGOTE_START_MS ZYGOTE_LOST_MS
#define ZYGOTE_GRACE_MS 2000

/* A worker process lost within this time of the last fork is not replaced before it ends. */
#define RESPAWN_MIN_MS 1000

/* Workers run under SCHED_IDLE; where that is refused, nice +19 (the weakest normal weight). */
#define WORKER_NICE 19

static struct slot *slot_at(const struct gw_workers *w, unsigned i)
{
    return (struct slot *)(void *)(w->shm + (size_t)i * w->stride);
}

static unsigned char *copy_of(struct slot *s)
{
    return (unsigned char *)s + SLOT_HDR;
}

/* ---- the worker process ---- */

static void lower_thread_priority(void)
{
    struct sched_param sp = {.sched_priority = 0};

    /* Linux: the policy and the nice value are per thread; 0 names the calling one (the zygote's
     * filter allows these two calls for it alone, with these values alone). Best effort. */
    if (syscall(SYS_sched_setscheduler, 0, SCHED_IDLE, &sp) != 0)
        (void)setpriority(PRIO_PROCESS, 0, WORKER_NICE);
}

/* A session of its own is an autogroup of its own where the kernel groups by session (no cpu
 * cgroup in use); that group is then given the weakest weight. Without CAP_SYS_ADMIN the kernel
 * takes one such write on the whole host per 100 ms (EAGAIN otherwise): retried for up to 3 s.
 * Returns 0 or errno (ENOENT: no autogroups; the threads' SCHED_IDLE is then what is left). */
static int lower_group_priority(void)
{
    struct timespec pause = {0, 100 * 1000 * 1000};
    int fd, err = 0;

    (void)setsid();
    for (int tries = 0; tries < 30; tries++) {
        fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return errno;
        err = write(fd, "19", 2) == 2 ? 0 : errno;
        close(fd);
        if (err != EAGAIN)
            break;
        nanosleep(&pause, NULL);
    }
    return err;
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    size_t n = strlen(text);
    int fd, rc = 0;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return ENAMETOOLONG;
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    if (write(fd, text, n) != (ssize_t)n)
        rc = errno != 0 ? errno : EIO;
    close(fd);
    return rc;
}

/* Into the configured cgroup, marked idle (cpu.idle, Linux 5.15 and later, cgroup v1's cpu
 * controller or v2): at every level of the CPU scheduler a task that wakes then takes the core
 * from the hashing at once, which autogroups and SCHED_IDLE alone do not give across groups.
 * Before any thread starts, so that all of them are in it. */
static void join_cgroup(const char *dir, struct hello *h)
{
    h->cg_step = CG_OK;
    h->cg_err = 0;
    if (dir == NULL)
        return;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        h->cg_step = CG_MKDIR;
        h->cg_err = errno;
    } else if ((h->cg_err = write_file(dir, "cpu.idle", "1")) != 0) {
        h->cg_step = CG_IDLE;
    } else if ((h->cg_err = write_file(dir, "cgroup.procs", "0")) != 0) {
        h->cg_step = CG_JOIN;
    }
}

struct child {
    const struct gw_workers *w;
    int fd;
    /* the threads' start: each puts the filter on itself, then waits for go */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned entered; /* threads that have reported (filtered, or not) */
    int enter_err;    /* the first error of a thread's gw_sandbox_enter */
    bool go;          /* every thread is filtered (or may run without): take jobs */
};

static _Noreturn void *child_thread(void *arg)
{
    const struct child *c = arg;
    const struct gw_workers *w = c->w;
    struct slot *s;
    uint32_t i;
    ssize_t n;
    int expect;

    for (;;) {
        n = recv(c->fd, &i, sizeof(i), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            _exit(0); /* the gateway closed its end */
        if (n != (ssize_t)sizeof(i) || i >= w->nslots)
            _exit(1);
        s = slot_at(w, i);
        expect = SLOT_QUEUED;
        if (atomic_compare_exchange_strong(&s->state, &expect, SLOT_RUNNING)) {
            s->work(copy_of(s));
            atomic_store(&s->state, SLOT_DONE);
        }
        do
            n = send(c->fd, &i, sizeof(i), MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof(i))
            _exit(0);
    }
}

/* A thread of the worker process other than the first: it puts the filter on itself, reports,
 * and takes jobs once the first thread says go (never, when the process ends instead). */
static _Noreturn void *child_start(void *arg)
{
    struct child *c = arg;
    int err = gw_sandbox_enter(); /* gw_sandbox_prepare's error, if it had one */

    pthread_mutex_lock(&c->mu);
    if (err != 0 && c->enter_err == 0)
        c->enter_err = err;
    c->entered++;
    pthread_cond_broadcast(&c->cv);
    while (!c->go)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    child_thread(c);
}

/* What both helper processes do first: die with their parent (and end at once if it is already
 * gone), refuse dumps and tracing, take a name, leave the signals a service manager or a terminal
 * sends to a whole group to the gateway (systemd's stop sends SIGTERM to every process of the
 * unit: they end with the gateway, not before it while it drains), and keep no descriptor but
 * stdio and fd, which becomes 3. A worker process (from_zygote) inherits the zygote's
 * dumpability, signal handlers and mask, and does not set them again (its parent's filter refuses
 * PR_SET_DUMPABLE). Returns 3. */
static int helper_setup(int fd, pid_t parent, const char *name, bool from_zygote)
{
    sigset_t all;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || getppid() != parent)
        _exit(0);
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
    if (!from_zygote) {
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        for (int sig = 1; sig < NSIG; sig++)
            (void)signal(sig, sig == SIGPIPE || sig == SIGTERM || sig == SIGINT || sig == SIGHUP ||
                                      sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGQUIT
                                  ? SIG_IGN
                                  : SIG_DFL);
        sigfillset(&all);
        (void)sigprocmask(SIG_UNBLOCK, &all, NULL);
    }
    if (fd != 3) {
        if (dup2(fd, 3) != 3)
            _exit(1);
        if (fd < 3)
            (void)close(fd); /* stdio was closed in the gateway: keep no second copy */
    }
    if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
        for (int i = 4; i < 65536; i++)
            (void)close(i);
    return 3;
}

/* The zygote's stdio, and so every worker process's, becomes /dev/null (stderr stays in a build
 * with AddressSanitizer, for its reports): under the filters they could not use it, and where the
 * filters are refused and not required, code that took a process over could otherwise write lines
 * into the gateway's log (the journal) or read the gateway's stdin (a terminal, when run by
 * hand). */
static void stdio_to_null(void)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (null < 0)
        _exit(1);
    for (int i = 0; i < 3; i++)
        if (i != null && !(i == 2 && gw_sandbox_keeps_stderr()) && dup2(null, i) != i)
            _exit(1);
    if (null > 2)
        (void)close(null);
}

/* What the zygote set up for every process it forks, before its own filter (which refuses open,
 * mkdir and setsid): its hello's first fields and its own filter's outcome. */
static struct hello zygote_setup;

/* The worker process: nothing of the gateway's is used but the shared slots and its socket. It runs
 * under the zygote's filter from its first instruction, and inherits the zygote's stdio
 * (/dev/null), session (autogroup), cgroup and oom_score_adj (1000); what it still sets itself
 * (its name, its death signal, its descriptors, SCHED_IDLE) the zygote's filter allows. Its
 * threads are created next (inheriting the first's SCHED_IDLE), each puts the compute-only filter
 * on itself, and no thread takes a job before all of them are filtered (or the process ends, or
 * runs unfiltered where that is allowed). */
static _Noreturn void child_main(const struct gw_workers *w, int fd, pid_t parent)
{
    static struct child c;
    struct hello hello = zygote_setup;
    unsigned created = 0;
    pthread_t t;
    int err;

    fd = helper_setup(fd, parent, "waygated-work", true);
    lower_thread_priority();
    c.w = w;
    c.fd = fd;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    (void)gw_sandbox_prepare(fd); /* its error comes back from every gw_sandbox_enter */
    for (unsigned i = 1; i < w->nthreads; i++) {
        if (pthread_create(&t, NULL, child_start, &c) != 0)
            break; /* fewer threads: slower, not wrong */
        created++;
    }
    err = gw_sandbox_enter();
    pthread_mutex_lock(&c.mu);
    while (c.entered < created)
        pthread_cond_wait(&c.cv, &c.mu);
    hello.sb_err = err != 0 ? err : c.enter_err;
    pthread_mutex_unlock(&c.mu);
    if (send(fd, &hello, sizeof(hello), MSG_NOSIGNAL) != (ssize_t)sizeof(hello))
        _exit(1);
    if ((hello.sb_err != 0 || hello.zsb_err != 0) && w->filter_required)
        _exit(1); /* no job runs unfiltered: the gateway turns hashing off on this hello */
    pthread_mutex_lock(&c.mu);
    c.go = true;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    child_thread(&c);
}

/* The zygote's answer to request number id (a uint32_t on its socket) for a worker process: its
 * pid, or err (an errno) and no descriptor; with err 0 it carries two, the gateway's end of the
 * process's socket and a pidfd. */
struct born {
    uint32_t id;
    int32_t pid;
    int32_t err;
    int32_t pad; /* 16 bytes */
};

#define ZYGOTE_KIDS 8 /* worker processes of one zygote not reaped yet, the live one included */

/* Kills (through its pidfd: the zygote's filter refuses kill) and reaps a child of the zygote not
 * reaped yet. Without a pidfd (pidfd_open failed), the child ends on its own: the other end of its
 * socket is closed before, and its hello cannot be sent. */
static void end_child(pid_t pid, int pidfd)
{
    if (pidfd >= 0)
        (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0u);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* The zygote's /proc/self/oom_score_adj (-1: none) and its own value, which it takes back after
 * each fork: the child inherits 1000 (the OOM killer's first choice: a storm of scrypt jobs, or
 * code that took the process over and allocates without end, loses that process, which the
 * gateway replaces, not the gateway or PostgreSQL), the zygote does not (lost, it is not
 * replaced). */
static int zygote_oom_fd = -1;
static char zygote_oom[16];

static void set_oom(const char *v)
{
    ssize_t n;

    if (zygote_oom_fd >= 0) /* best effort: a failure leaves a value, not a hole */
        while ((n = write(zygote_oom_fd, v, strlen(v))) < 0 && errno == EINTR)
            ;
}

/* Forks a worker process for the zygote and answers the gateway on fd (3). kids[] holds the
 * pidfds of the zygote's children not reaped yet. */
static void zygote_fork(const struct gw_workers *w, int fd, uint32_t id, int *kid_fd,
                        pid_t *kid_pid, int *nkids)
{
    struct born b = {.id = id, .pid = -1, .err = 0};
    int sv[2] = {-1, -1}, pidfd = -1;
    pid_t self = getpid(), pid = -1;
    ssize_t n;
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = &b, .iov_len = sizeof(b)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

    if (*nkids == ZYGOTE_KIDS)
        b.err = EAGAIN;
    else if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        b.err = errno;
    else {
        set_oom("1000");
        if ((pid = fork()) == 0) {
            close(sv[0]); /* the gateway's end: the process must see its socket close */
            child_main(w, sv[1], self);
        }
        set_oom(zygote_oom);
        if (pid < 0)
            b.err = errno;
    }
    if (sv[1] >= 0)
        close(sv[1]);
    /* Before any wait: the child cannot be reaped (and its pid reused) until we wait for it. */
    if (pid > 0 && (pidfd = (int)syscall(SYS_pidfd_open, pid, 0u)) < 0) {
        b.err = errno;
        close(sv[0]);
        sv[0] = -1;
        end_child(pid, -1);
    }
    if (b.err == 0) {
        struct cmsghdr *cm;

        b.pid = pid;
        memset(&u, 0, sizeof(u));
        m.msg_control = u.buf;
        m.msg_controllen = sizeof(u.buf);
        cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
        memcpy(CMSG_DATA(cm), (int[2]){sv[0], pidfd}, 2 * sizeof(int));
    }
    while ((n = sendmsg(fd, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (sv[0] >= 0)
        close(sv[0]); /* the gateway has its own copy now, if it was sent */
    if (n == (ssize_t)sizeof(b) && b.err == 0) {
        kid_fd[*nkids] = pidfd;
        kid_pid[(*nkids)++] = pid;
        return;
    }
    if (b.err == 0) { /* the answer could not go: that process must not live on, unseen */
        b.err = n < 0 ? errno : EIO;
        b.pid = -1;
        end_child(pid, pidfd);
        close(pidfd);
        m.msg_control = NULL;
        m.msg_controllen = 0;
        while ((n = sendmsg(fd, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
            ;
    }
    if (n != (ssize_t)sizeof(b))
        _exit(1); /* no answer at all: the gateway sees the zygote end, and fails closed */
}

/* The zygote's set-up, done once for every process it forks (they inherit it) before its filter
 * goes on: stdio on /dev/null; a session of its own, its autogroup lowered; the cgroup joined; its
 * oom_score_adj kept open to be raised around each fork. Then its own system-call filter
 * (sandbox.h): it parses the gateway's requests, and code that took it over must reach nothing
 * the gateway's user can. */
static void zygote_prepare(const struct gw_workers *w, int fd)
{
    ssize_t n;

    stdio_to_null();
    zygote_setup.ag_err = lower_group_priority();
    join_cgroup(w->cgroup, &zygote_setup);
    zygote_oom_fd = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
    if (zygote_oom_fd >= 0) {
        n = read(zygote_oom_fd, zygote_oom, sizeof(zygote_oom) - 1);
        zygote_oom[n > 0 ? n : 0] = '\0';
        if (n <= 0) { /* cannot take its value back: leave it alone (best effort, as before) */
            close(zygote_oom_fd);
            zygote_oom_fd = -1;
        }
    }
    zygote_setup.zsb_err = gw_sandbox_enter_zygote(fd, zygote_oom_fd);
}

/* The zygote: forked by gw_workers_new before the gateway reads any key, it forks each worker
 * process, so that a replacement holds a copy of the gateway's memory as it was then, not as it
 * is now. It reaps its children as they end. When the gateway closes its end it kills and reaps
 * them and exits. */
static _Noreturn void zygote_main(const struct gw_workers *w, int fd, pid_t parent)
{
    int kid_fd[ZYGOTE_KIDS];
    pid_t kid_pid[ZYGOTE_KIDS];
    int nkids = 0;

    fd = helper_setup(fd, parent, "waygated-zygote", false);
    zygote_prepare(w, fd);
    for (;;) {
        struct pollfd p[1 + ZYGOTE_KIDS];
        uint32_t req;
        ssize_t n;

        p[0].fd = fd;
        p[0].events = POLLIN;
        for (int i = 0; i < nkids; i++) {
            p[1 + i].fd = kid_fd[i];
            p[1 + i].events = POLLIN;
        }
        if (poll(p, (nfds_t)(1 + nkids), -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        for (int i = nkids - 1; i >= 0; i--)
            if (p[1 + i].revents != 0) { /* it ended: reap it */
                while (waitpid(kid_pid[i], NULL, 0) < 0 && errno == EINTR)
                    ;
                close(kid_fd[i]);
                kid_fd[i] = kid_fd[nkids - 1];
                kid_pid[i] = kid_pid[--nkids];
            }
        if (p[0].revents == 0)
            continue;
        n = recv(fd, &req, sizeof(req), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n != (ssize_t)sizeof(req)) { /* the gateway closed its end (or broke the protocol) */
            for (int i = 0; i < nkids; i++)
                (void)syscall(SYS_pidfd_send_signal, kid_fd[i], SIGKILL, NULL, 0u);
            for (int i = 0; i < nkids; i++)
                while (waitpid(kid_pid[i], NULL, 0) < 0 && errno == EINTR)
                    ;
            _exit(0);
        }
        zygote_fork(w, fd, req, kid_fd, kid_pid, &nkids);
    }
}

/* ---- the gateway's side ---- */

static void answer_cb(evutil_socket_t fd, short what, void *arg);

static int watch(struct gw_workers *w)
{
    w->ev = event_new(w->base, w->sock, EV_READ | EV_PERSIST, answer_cb, w);
    if (w->ev == NULL || event_add(w->ev, NULL) != 0) {
        if (w->ev != NULL)
            event_free(w->ev);
        w->ev = NULL;
        return GW_ENOMEM;
    }
    return 0;
}

/* Ends the current worker process: its socket closed, the process killed (through its pidfd: no
 * pid is reused while the zygote has not reaped it). With wait (shutdown, or a process that broke
 * the protocol and may still be running), returns once it has ended; the zygote reaps it. */
static void reap(struct gw_workers *w, bool wait)
{
    if (w->ev != NULL)
        event_free(w->ev);
    w->ev = NULL;
    if (w->sock >= 0)
        close(w->sock);
    w->sock = -1;
    if (w->pidfd >= 0) {
        struct pollfd p = {.fd = w->pidfd, .events = POLLIN};

        (void)syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0u);
        if (wait)
            while (poll(&p, 1, -1) < 0 && errno == EINTR)
                ;
        close(w->pidfd);
    }
    w->pidfd = -1;
    w->pid = -1;
    w->hello_seen = false;
    w->resets = 0;
}

/* Ends the zygote and reaps it. With grace (gw_workers_free) its socket is closed first and it has
 * ZYGOTE_GRACE_MS to kill and reap its worker processes and exit; without (it is lost), or after
 * that, it is killed. */
static void zygote_end(struct gw_workers *w, bool grace)
{
    if (w->zev != NULL)
        event_free(w->zev);
    if (w->zdeath_ev != NULL)
        event_free(w->zdeath_ev);
    if (w->zlate_ev != NULL)
        event_free(w->zlate_ev);
    w->zev = w->zdeath_ev = w->zlate_ev = NULL;
    w->zpending = false;
    if (w->zsock >= 0)
        close(w->zsock);
    w->zsock = -1;
    if (w->zpid > 0) {
        struct pollfd p = {.fd = w->zpidfd, .events = POLLIN};
        uint64_t end = gw_clock_ms() + (grace ? ZYGOTE_GRACE_MS : 0);
        int r = 0;

        while (w->zpidfd >= 0) {
            uint64_t now = gw_clock_ms();

            r = poll(&p, 1, now < end ? (int)(end - now) : 0);
            if (r >= 0 || errno != EINTR)
                break;
        }
        if (r <= 0) /* still running: our own child, not reaped, so its pid is its own */
            (void)kill(w->zpid, SIGKILL);
        while (waitpid(w->zpid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (w->zpidfd >= 0)
        close(w->zpidfd);
    w->zpidfd = -1;
    w->zpid = -1;
}

/* Password hashing is off until the gateway restarts: the zygote is ended (its worker process
 * with it) and never replaced; every submit answers GW_EUNAVAIL. */
static void hashing_off(struct gw_workers *w)
{
    zygote_end(w, false);
    w->off = true;
}

/* The zygote is lost (gone, or it broke the protocol): it is ended, and no worker process is
 * forked until the gateway restarts, since a new zygote forked now would hold the gateway's keys.
 */
static void zygote_lost(struct gw_workers *w, const char *why)
{
    GW_LOG(GW_LOG_ERROR, "workers", NULL,
           "the password-hashing processes' zygote %ld %s; password hashing is off until the "
           "gateway restarts (logins answer UNAVAILABLE): a zygote forked now would hold the "
           "gateway's keys",
           (long)w->zpid, why);
    hashing_off(w);
}

/* Forks the zygote (gw_workers_new, before the daemon reads any key). Descriptors 0-2 are opened
 * on /dev/null first where they are closed, so that no socket or pidfd of the helpers lands there
 * (their close_range keeps 0-2). */
static int zygote_start(struct gw_workers *w)
{
    pid_t parent = getpid(), pid;
    int sv[2], fd;

    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd < 3)
        ;
    if (fd >= 3)
        close(fd);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return GW_EUNAVAIL;
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        zygote_main(w, sv[1], parent);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return GW_EUNAVAIL;
    }
    w->zpid = pid;
    w->zsock = sv[0];
    /* Our own child: not reaped before we wait for it, so the pidfd is its. */
    w->zpidfd = (int)syscall(SYS_pidfd_open, pid, 0u);
    if (w->zpidfd < 0 || fcntl(w->zsock, F_SETFL, O_NONBLOCK) != 0) {
        zygote_end(w, false);
        return GW_EUNAVAIL;
    }
    return 0;
}

/* Every descriptor a message on the zygote's socket carried, into fds (at most max; the others
 * closed); returns how many. */
static int take_fds(struct msghdr *m, int *fds, int max)
{
    int n = 0;

    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm != NULL; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
            cm->cmsg_len < CMSG_LEN(0))
            continue;
        for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
            int fd;

            memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(fd));
            if (n < max)
                fds[n++] = fd;
            else
                close(fd);
        }
    }
    return n;
}

static void close_fds(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* A worker process the zygote forked: its pid, pidfd and the gateway's end of its socket. */
struct proc {
    pid_t pid;
    int pidfd, sock;
};

/* Sends the next request (none is outstanding): 0, or GW_EUNAVAIL (not now, or the zygote is
 * lost). */
static int zygote_send(struct gw_workers *w)
{
    uint32_t id = w->zreq + 1;
    ssize_t n;

    do
        n = send(w->zsock, &id, sizeof(id), MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(id)) {
        w->zreq = id;
        w->zpending = true;
        return 0;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN))
        zygote_lost(w, "is gone");
    else
        GW_LOG(GW_LOG_ERROR, "workers", NULL,
               "cannot ask the zygote for a password-hashing process: %s",
               n < 0 ? strerror(errno) : "short send");
    return GW_EUNAVAIL;
}

enum z_read {
    Z_NONE,   /* nothing to read now (the answer is still due, if one was asked for) */
    Z_FAILED, /* the answer: no process (logged) */
    Z_PROC,   /* the answer: a process */
    Z_LOST,   /* the zygote is lost (ended and logged) */
};

/* Reads one message from the zygote without waiting. */
static enum z_read zygote_read(struct gw_workers *w, struct proc *out)
{
    struct born b;
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = &b, .iov_len = sizeof(b)};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    int fds[4], nfds;
    ssize_t n;

    do
        n = recvmsg(w->zsock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return Z_NONE;
        if (errno == ECONNRESET || errno == ENOTCONN) {
            zygote_lost(w, "is gone");
            return Z_LOST;
        }
        zygote_lost(w, "could not be read from"); /* no such error is expected here */
        return Z_LOST;
    }
    nfds = take_fds(&m, fds, 4);
    if (n == 0 || n != (ssize_t)sizeof(b) || (m.msg_flags & MSG_TRUNC) != 0 || !w->zpending ||
        b.id != w->zreq) {
        close_fds(fds, nfds);
        zygote_lost(w, n == 0 ? "is gone" : "broke the protocol on its socket");
        return Z_LOST;
    }
    w->zpending = false;
    if (w->zlate_ev != NULL)
        (void)evtimer_del(w->zlate_ev);
    if ((m.msg_flags & MSG_CTRUNC) != 0) { /* the gateway has no descriptor left */
        close_fds(fds, nfds);
        GW_LOG(GW_LOG_ERROR, "workers", NULL,
               "no descriptor left for a new password-hashing process; logins answer UNAVAILABLE "
               "until one is free");
        return Z_FAILED;
    }
    if (b.err != 0 || nfds != 2 || b.pid <= 0) {
        close_fds(fds, nfds);
        if (b.err == 0 || nfds != 0) {
            zygote_lost(w, "broke the protocol on its socket");
            return Z_LOST;
        }
        GW_LOG(GW_LOG_ERROR, "workers", NULL,
               "the zygote could not fork a password-hashing process: %s", strerror(b.err));
        return Z_FAILED;
    }
    out->pid = b.pid;
    out->sock = fds[0];
    out->pidfd = fds[1];
    return Z_PROC;
}

/* Waits ms at most for the answer to the outstanding request. */
static enum z_read zygote_await(struct gw_workers *w, int ms, struct proc *out)
{
    uint64_t end = gw_clock_ms() + (uint64_t)ms;

    for (;;) {
        struct pollfd p = {.fd = w->zsock, .events = POLLIN};
        uint64_t now = gw_clock_ms();
        enum z_read r = zygote_read(w, out);

        if (r != Z_NONE || now >= end)
            return r;
        (void)poll(&p, 1, (int)(end - now)); /* EINTR or the time up: checked above */
    }
}

/* The process's first message: how its setup went. What did not work is logged; the process
 * runs without it. */
static void hello_from(struct gw_workers *w, const struct hello *h)
{
    static const char *const what[] = {
        [CG_MKDIR] = "create",
        [CG_IDLE] = "mark idle (cpu.idle)",
        [CG_JOIN] = "join (cgroup.procs)",
    };
    const char *who;
    int zerr;

    w->hello_seen = true;
    w->cgroup_err = h->cg_step == CG_OK ? 0 : h->cg_err > 0 ? h->cg_err : EIO;
    /* the zygote's filter first: the process runs under both */
    zerr = h->zsb_err >= 0 ? h->zsb_err : EIO;
    w->sandbox_err = zerr != 0 ? zerr : h->sb_err >= 0 ? h->sb_err : EIO;
    who = zerr != 0 ? "'s zygote" : "";
    if (w->sandbox_err != 0 && w->filter_required) {
        GW_LOG(GW_LOG_ERROR, "workers", NULL,
               "the password-hashing process %ld%s could not put on its system-call filter "
               "(seccomp): %s; it ended, and password hashing is off until the gateway restarts "
               "(logins answer UNAVAILABLE); [auth] worker_filter_required = false lets it run "
               "unfiltered",
               (long)w->pid, who, strerror(w->sandbox_err));
        hashing_off(w);
    } else if (w->sandbox_err != 0) {
        GW_LOG(GW_LOG_WARN, "workers", NULL,
               "the password-hashing process %ld%s runs without its system-call filter "
               "(seccomp): %s ([auth] worker_filter_required = false); code that took it over "
               "could open what the gateway's user can, the keyring included, and signal the "
               "gateway",
               (long)w->pid, who, strerror(w->sandbox_err));
    }
    if (h->ag_err != 0 && h->ag_err != ENOENT)
        GW_LOG(GW_LOG_WARN, "workers", NULL,
               "the password-hashing process %ld could not lower its scheduling group "
               "(/proc/self/autogroup): %s; a login storm can delay other work",
               (long)w->pid, strerror(h->ag_err));
    if (h->cg_step > CG_OK && h->cg_step <= CG_JOIN)
        GW_LOG(GW_LOG_WARN, "workers", NULL,
               "the password-hashing process %ld could not %s [auth] worker_cgroup %s: %s; it "
               "runs outside it, and a login storm can delay other work",
               (long)w->pid, what[h->cg_step], w->cgroup, strerror(w->cgroup_err));
}

/* The process p becomes the pool's worker process (the respawn limit counts from now). */
static int adopt(struct gw_workers *w, const struct proc *p)
{
    w->spawned_ms = gw_clock_ms();
    w->pid = p->pid;
    w->pidfd = p->pidfd;
    w->sock = p->sock;
    w->hello_seen = false;
    w->resets = 0;
    if (fcntl(w->sock, F_SETFL, O_NONBLOCK) != 0 || (w->base != NULL && watch(w) != 0)) {
        GW_LOG(GW_LOG_ERROR, "workers", NULL,
               "cannot watch the new password-hashing process %ld; it is ended", (long)p->pid);
        reap(w, false); /* it holds no job */
        return GW_EUNAVAIL;
    }
    return 0;
}

/* Asks the zygote for a worker process and waits ZYGOTE_WAIT_MS at most (ZYGOTE_START_MS before
 * the loop runs). GW_EUNAVAIL when there is none now: the zygote is lost, could not fork one, the
 * gateway has no descriptor left, or the answer is late (it is taken when it comes, and no other
 * request is sent, nor waited for, meanwhile). */
static int spawn(struct gw_workers *w)
{
    struct proc p;
    enum z_read r;

    if (w->zsock < 0 || w->zpending)
        return GW_EUNAVAIL;
    w->spawned_ms = gw_clock_ms();
    if (zygote_send(w) != 0)
        return GW_EUNAVAIL;
    r = zygote_await(w, w->base != NULL ? ZYGOTE_WAIT_MS : ZYGOTE_START_MS, &p);
    if (r == Z_NONE) {
        struct timeval tv = gw_clock_tv(w->zpatience_ms);

        GW_LOG(GW_LOG_WARN, "workers", NULL,
               "the zygote %ld did not answer within %d ms; logins answer UNAVAILABLE until its "
               "answer comes (after %lu ms more it is taken as lost)",
               (long)w->zpid, w->base != NULL ? ZYGOTE_WAIT_MS : ZYGOTE_START_MS,
               (unsigned long)w->zpatience_ms);
        if (w->zlate_ev != NULL)
            (void)evtimer_add(w->zlate_ev, &tv);
    }
    return r == Z_PROC ? adopt(w, &p) : GW_EUNAVAIL;
}

/* An answer on the loop: a late one (its process becomes the worker process), or the zygote's
 * end. */
static void zygote_answer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_workers *w = arg;
    struct proc p;
    enum z_read r;

    (void)fd;
    (void)what;
    while ((r = zygote_read(w, &p)) != Z_NONE && r != Z_LOST) {
        if (r != Z_PROC)
            continue;
        if (w->sock >= 0) { /* cannot be (one request, sent with no process): never two */
            close(p.sock);
            close(p.pidfd);
        } else if (adopt(w, &p) == 0) {
            GW_LOG(GW_LOG_INFO, "workers", NULL,
                   "the zygote's late answer came: password-hashing process %ld", (long)p.pid);
        }
    }
}

/* A request still unanswered after zpatience_ms: the zygote is lost (fails closed, visibly). */
static void zygote_late_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_workers *w = arg;

    (void)fd;
    (void)what;
    if (w->zpending)
        zygote_lost(w, "did not answer a request in time");
}

/* The zygote has ended: noticed at once, not at the next login. */
static void zygote_death_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_workers *w = arg;

    (void)fd;
    (void)what;
    if (w->zsock >= 0)
        zygote_lost(w, "exited");
}

/* Watches the zygote's answers and its end on the loop. */
static int zygote_watch(struct gw_workers *w)
{
    w->zev = event_new(w->base, w->zsock, EV_READ | EV_PERSIST, zygote_answer_cb, w);
    w->zdeath_ev = event_new(w->base, w->zpidfd, EV_READ, zygote_death_cb, w);
    w->zlate_ev = evtimer_new(w->base, zygote_late_cb, w);
    if (w->zev == NULL || w->zdeath_ev == NULL || w->zlate_ev == NULL ||
        event_add(w->zev, NULL) != 0 || event_add(w->zdeath_ev, NULL) != 0)
        return GW_ENOMEM;
    return 0;
}

/* Slot i and its job record are free again, the copy wiped. */
static void release(struct gw_workers *w, unsigned i)
{
    struct slot *s = slot_at(w, i);
    struct gw_job *j = &w->jobs[i];

    gw_wipe(copy_of(s), j->size);
    s->work = NULL;
    atomic_store(&s->state, SLOT_FREE);
    memset(j, 0, sizeof(*j));
    j->w = w;
    w->inflight--;
}

/* Slot i's job ends: done with its result when the work was done (st SLOT_DONE), else with
 * GW_EUNAVAIL; nothing when it was cancelled. */
static void finish(struct gw_workers *w, unsigned i, int st)
{
    struct gw_job *j = &w->jobs[i];
    bool cancelled = j->cancelled;
    gw_job_done_fn done = j->done;
    void *arg = j->arg;

    if (!cancelled && st == SLOT_DONE && j->size > w->keep)
        memcpy((unsigned char *)arg + w->keep, copy_of(slot_at(w, i)) + w->keep, j->size - w->keep);
    release(w, i);
    if (!cancelled)
        done(arg, st == SLOT_DONE ? 0 : GW_EUNAVAIL);
}

/* The worker process is gone (or broke the protocol and is killed): its jobs end, those it had
 * finished with their results (the answer may not have been sent), the others with GW_EUNAVAIL.
 * Done functions may cancel jobs not yet ended here, and submit new ones (to a new process). */
static void died(struct gw_workers *w, const char *why, bool wait)
{
    GW_LOG(GW_LOG_ERROR, "workers", NULL,
           "the password-hashing process %ld %s; the %u job(s) it held end (those it had not "
           "finished answer UNAVAILABLE), %s",
           (long)w->pid, why, w->inflight,
           w->off ? "and password hashing is off" : "the next job starts a new one");
    reap(w, wait); /* no thread of it runs from here on: the slots are the gateway's alone */
    w->deaths++;
    /* First mark them all: a done run below may submit (to a new process) or cancel. */
    for (unsigned i = 0; i < w->nslots; i++)
        if (w->jobs[i].state == JOB_BUSY)
            w->jobs[i].state = JOB_FAILING;
    for (unsigned i = 0; i < w->nslots; i++)
        if (w->jobs[i].state == JOB_FAILING)
            finish(w, i, atomic_load(&slot_at(w, i)->state));
}

static void answer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_workers *w = arg;
    union {
        uint32_t i;
        struct hello h;
    } m;
    ssize_t n;

    (void)what;
    for (;;) {
        n = recv(fd, &m, sizeof(m), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* A process that exits with numbers unread resets the socket once: the answers it had
         * sent are still to read, then its end (a send in between may take the reset instead:
         * that submit answers GW_EUNAVAIL). */
        if (n < 0 && errno == ECONNRESET && w->resets++ == 0)
            continue;
        if (n == (ssize_t)sizeof(m.h) && !w->hello_seen) {
            hello_from(w, &m.h);
            continue;
        }
        if (n == (ssize_t)sizeof(m.i) && w->hello_seen && m.i < w->nslots &&
            w->jobs[m.i].state == JOB_BUSY) {
            finish(w, m.i, atomic_load(&slot_at(w, m.i)->state));
            continue;
        }
        if (n == 0 || (n < 0 && (errno == ENOTCONN || errno == EPIPE)))
            died(w, "exited", false); /* its end is closed: no thread of it runs */
        else /* a second reset, another error, or a message out of turn: make sure */
            died(w, "broke the protocol on its socket and was killed", true);
        return;
    }
}

struct gw_workers *gw_workers_new(unsigned nthreads, unsigned queue_max, size_t arg_max,
                                  const char *cgroup, bool filter_required)
{
    struct gw_workers *w;
    void *p;

    if (nthreads == 0 || queue_max == 0 || arg_max == 0 || arg_max > (1u << 20) ||
        nthreads > 1024 || queue_max > 1u << 16)
        return NULL;
    w = gw_calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->nthreads = nthreads;
    w->queue_max = queue_max;
    w->nslots = nthreads + queue_max;
    w->arg_max = arg_max;
    w->stride = (SLOT_HDR + arg_max + 63) & ~(size_t)63;
    w->shm_len = w->stride * w->nslots;
    w->pid = -1;
    w->pidfd = -1;
    w->sock = -1;
    w->zpid = -1;
    w->zpidfd = -1;
    w->zsock = -1;
    w->cgroup_err = -1;
    w->sandbox_err = -1;
    w->filter_required = filter_required;
    w->respawn_min_ms = RESPAWN_MIN_MS;
    w->zpatience_ms = ZYGOTE_LOST_MS;
    w->jobs = gw_calloc(w->nslots, sizeof(*w->jobs));
    w->cgroup = cgroup != NULL ? gw_strdup(cgroup) : NULL;
    p = mmap(NULL, w->shm_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (w->jobs == NULL || p == MAP_FAILED || (cgroup != NULL && w->cgroup == NULL)) {
        if (p != MAP_FAILED)
            munmap(p, w->shm_len);
        gw_free(w->cgroup);
        gw_free(w->jobs);
        gw_free(w);
        return NULL;
    }
    w->shm = p;
    (void)madvise(p, w->shm_len, MADV_DONTDUMP); /* passwords pass through it */
    (void)mlock(p, w->shm_len);                  /* best effort: keep them out of swap */
    for (unsigned i = 0; i < w->nslots; i++)
        w->jobs[i].w = w;
    if (zygote_start(w) != 0 || spawn(w) != 0) {
        gw_workers_free(w);
        return NULL;
    }
    return w;
}

int gw_workers_attach(struct gw_workers *w, struct event_base *base)
{
    if (w == NULL || base == NULL || w->base != NULL)
        return GW_EINVAL;
    w->base = base;
    if (w->zsock >= 0 && zygote_watch(w) != 0)
        return GW_ENOMEM;
    return w->sock >= 0 ? watch(w) : 0;
}

void gw_workers_free(struct gw_workers *w)
{
    if (w == NULL)
        return;
    reap(w, true);
    zygote_end(w, true);
    for (unsigned i = 0; i < w->nslots; i++) {
        struct gw_job *j = &w->jobs[i];

        if (j->state != JOB_FREE && !j->cancelled && j->drop != NULL)
            j->drop(j->arg);
    }
    gw_wipe(w->shm, w->shm_len);
    munmap(w->shm, w->shm_len);
    gw_free(w->cgroup);
    gw_free(w->jobs);
    gw_free(w);
}

void gw_workers_keep(struct gw_workers *w, size_t n)
{
    w->keep = n;
}

int gw_workers_submit(struct gw_workers *w, gw_job_fn work, gw_job_done_fn done, gw_job_fn drop,
                      void *arg, size_t size, struct gw_job **out)
{
    unsigned i, free_slot = UINT32_MAX;
    struct slot *s;
    struct gw_job *j;
    uint32_t msg;
    ssize_t n;

    if (out != NULL)
        *out = NULL;
    if (w == NULL || w->base == NULL || work == NULL || done == NULL || arg == NULL || size == 0 ||
        size > w->arg_max)
        return GW_EINVAL;
    if (w->sock < 0 && (gw_clock_ms() - w->spawned_ms < w->respawn_min_ms || spawn(w) != 0))
        return GW_EUNAVAIL;
    if (gw_workers_queued(w) >= w->queue_max)
        return GW_ETOOBIG;
    for (i = 0; i < w->nslots && free_slot == UINT32_MAX; i++)
        if (w->jobs[i].state == JOB_FREE)
            free_slot = i;
    if (free_slot == UINT32_MAX) /* cancelled jobs still running hold the rest */
        return GW_ETOOBIG;
    s = slot_at(w, free_slot);
    j = &w->jobs[free_slot];
    memcpy(copy_of(s), arg, size);
    s->work = work;
    atomic_store(&s->state, SLOT_QUEUED);
    j->state = JOB_BUSY;
    j->cancelled = false;
    j->done = done;
    j->drop = drop;
    j->arg = arg;
    j->size = size;
    w->inflight++;
    msg = free_slot;
    do
        n = send(w->sock, &msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(msg)) {
        /* Not sent: the slot is ours again. A dead process is noticed on its socket's end. */
        int err = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? GW_ETOOBIG : GW_EUNAVAIL;

        release(w, free_slot);
        return err;
    }
    if (out != NULL)
        *out = j;
    return 0;
}

void gw_workers_cancel(struct gw_job *j)
{
    if (j == NULL || j->state == JOB_FREE || j->cancelled)
        return;
    if (j->state == JOB_BUSY) {
        int expect = SLOT_QUEUED;

        /* Not taken yet: no thread will run it. Taken: it runs to its end, unseen. */
        (void)atomic_compare_exchange_strong(&slot_at(j->w, (unsigned)(j - j->w->jobs))->state,
                                             &expect, SLOT_CANCELLED);
    }
    j->cancelled = true;
    if (j->drop != NULL)
        j->drop(j->arg);
    j->arg = NULL;
}

unsigned gw_workers_queued(const struct gw_workers *w)
{
    unsigned n = 0;

    for (unsigned i = 0; i < w->nslots; i++)
        if (w->jobs[i].state == JOB_BUSY && atomic_load(&slot_at(w, i)->state) == SLOT_QUEUED)
            n++;
    return n;
}

unsigned gw_workers_inflight(const struct gw_workers *w)
{
    return w->inflight;
}

unsigned long gw_workers_deaths(const struct gw_workers *w)
{
    return w->deaths;
}

void gw_workers_set_respawn_ms(struct gw_workers *w, unsigned long ms)
{
    w->respawn_min_ms = ms;
}

void gw_workers_set_zygote_patience_ms(struct gw_workers *w, unsigned long ms)
{
    w->zpatience_ms = ms;
}

pid_t gw_workers_pid(const struct gw_workers *w)
{
    return w->pid;
}

pid_t gw_workers_zygote_pid(const struct gw_workers *w)
{
    return w->zpid;
}

bool gw_workers_hashing_off(const struct gw_workers *w)
{
    return w->off;
}

int gw_workers_cgroup_err(const struct gw_workers *w)
{
    return w->cgroup_err;
}

int gw_workers_sandbox_err(const struct gw_workers *w)
{
    return w->sandbox_err;
}

const void *gw_workers_shared(const struct gw_workers *w, size_t *len)
{
    *len = w->shm_len;
    return w->shm;
}
