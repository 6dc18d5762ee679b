/* test_sandbox.c: the compute-only system-call filter (sandbox.h), call by call. Each case runs in
 * a child forked for it: the child puts the filter on (its socket: one end of a socket pair),
 * makes one call and exits with 0 when the call succeeded, or with the errno it got; a call the
 * filter kills ends the child with SIGSYS. (A process of several threads puts the filter on each:
 * test_workers/test_sandbox_refuses.) "Another process" is a victim the test forks for the
 * case (so that a filter that lets ptrace through stops the victim, not the test). What the hashing
 * process needs works (its socket, memory, clocks, randomness, queries about itself, abort's
 * tgkill of itself); no new thread or process; whatever reaches another process, a file, the
 * network or stdio is refused (EPERM), including the ways around a plain kill (fcntl F_SETOWN,
 * tgkill, sigqueue, pidfds, CPU clocks by pid); another architecture's numbering kills.
 * gw_sandbox_refuse_for_tests installs nothing. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox.h"

#define KILLED (-SIGSYS) /* the expected outcome of a call the filter kills */

/* The result of a call as a child's exit code: 0, or the errno (never 0 after a failure). */
static int result(long rc)
{
    return rc < 0 ? (errno != 0 ? errno : 255) : 0;
}

/* ---- the calls, each given the child's socket and the victim's pid ---- */

/* The CPU clock of process pid: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), a negative id. */
static clockid_t cpu_clock_of(pid_t pid)
{
    return (clockid_t)((~(unsigned)pid << 3) | 2u);
}

static int c_getpid(int s, pid_t t)
{
    (void)s;
    (void)t;
    return getpid() > 0 ? 0 : 255;
}

static int c_send_socket(int s, pid_t t)
{
    (void)t;
    return result(send(s, "x", 1, MSG_NOSIGNAL));
}

static int c_recv_socket(int s, pid_t t)
{
    char b;

    (void)t;
    return result(recv(s, &b, 1, 0)); /* the test sent a byte before the fork */
}

static int c_memory(int s, pid_t t)
{
    size_t n = 8u << 20;
    unsigned char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    (void)s;
    (void)t;
    if (p == MAP_FAILED)
        return errno;
    memset(p, 1, n);
    if (mprotect(p, 4096, PROT_READ) != 0 || madvise(p, n, MADV_DONTNEED) != 0)
        return errno;
    return result(munmap(p, n));
}

static void *thread_fn(void *arg)
{
    *(int *)arg = 7;
    return NULL;
}

static int c_thread(int s, pid_t t)
{
    pthread_t th;
    int v = 0, rc;

    (void)s;
    (void)t;
    rc = pthread_create(&th, NULL, thread_fn, &v);
    if (rc != 0)
        return rc;
    rc = pthread_join(th, NULL);
    return rc != 0 ? rc : v == 7 ? 0 : 255;
}

static int c_random(int s, pid_t t)
{
    unsigned char b[32];

    (void)s;
    (void)t;
    return result(getrandom(b, sizeof(b), 0));
}

/* Through the system call, not the vDSO: the filter sees it. */
static int c_clock_monotonic(int s, pid_t t)
{
    struct timespec ts;

    (void)s;
    (void)t;
    return result(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts));
}

static int c_clock_own_cpu(int s, pid_t t)
{
    struct timespec ts;

    (void)s;
    (void)t;
    return result(syscall(SYS_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &ts));
}

static int c_sleep(int s, pid_t t)
{
    struct timespec ts = {0, 1000};

    (void)s;
    (void)t;
    return result(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL));
}

static int c_fcntl_getfd(int s, pid_t t)
{
    (void)t;
    return result(fcntl(s, F_GETFD));
}

static int c_fcntl_getfl(int s, pid_t t)
{
    (void)t;
    return result(fcntl(s, F_GETFL));
}

/* recv on a descriptor that is not its socket: stdin (unfiltered: data, ENOTSOCK or EBADF) */
static int c_recv_other(int s, pid_t t)
{
    char b;

    (void)s;
    (void)t;
    return result(recv(0, &b, 1, MSG_DONTWAIT));
}

static int c_sched_param_test(int s, pid_t t)
{
    struct sched_param sp;

    (void)s;
    return result(sched_getparam(t, &sp));
}

static int c_clock_res_test(int s, pid_t t)
{
    struct timespec ts;

    (void)s;
    return result(syscall(SYS_clock_getres, cpu_clock_of(t), &ts));
}

static int c_clock_sleep_test(int s, pid_t t)
{
    struct timespec ts = {0, 1000};

    (void)s;
    return result(syscall(SYS_clock_nanosleep, cpu_clock_of(t), 0, &ts, NULL));
}

static int c_getsid_self(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(getsid(0));
}

static int c_sched_self(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(sched_getscheduler(0));
}

static int c_dumpable(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
}

static int c_tgkill_self(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), 0));
}

static int c_affinity(int s, pid_t t)
{
    cpu_set_t set;

    (void)s;
    (void)t;
    return result(syscall(SYS_sched_getaffinity, 0, sizeof(set), &set));
}

static int c_kill_test(int s, pid_t t)
{
    (void)s;
    return result(kill(t, 0));
}

static int c_tgkill_test(int s, pid_t t)
{
    (void)s;
    return result(syscall(SYS_tgkill, t, t, 0));
}

static int c_sigqueue_test(int s, pid_t t)
{
    siginfo_t si;

    (void)s;
    memset(&si, 0, sizeof(si));
    si.si_code = SI_QUEUE;
    return result(syscall(SYS_rt_sigqueueinfo, t, 0, &si));
}

static int c_pidfd_test(int s, pid_t t)
{
    (void)s;
    return result(syscall(SYS_pidfd_open, t, 0u));
}

/* F_SETOWN on its own socket: the kernel would then signal the owner (the gateway) at each
 * message. */
static int c_fcntl_setown(int s, pid_t t)
{
    return result(fcntl(s, F_SETOWN, t));
}

static int c_fcntl_setsig(int s, pid_t t)
{
    (void)t;
    return result(fcntl(s, F_SETSIG, SIGKILL));
}

static int c_fcntl_setfl(int s, pid_t t)
{
    (void)t;
    return result(fcntl(s, F_SETFL, O_ASYNC));
}

static int c_dupfd(int s, pid_t t)
{
    (void)t;
    return result(fcntl(s, F_DUPFD_CLOEXEC, 10));
}

static int c_send_stdout(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(sendto(1, "x", 1, MSG_NOSIGNAL, NULL, 0));
}

static int c_write_stdout(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(write(1, "", 0));
}

static int c_read_socket(int s, pid_t t)
{
    char b;

    (void)t;
    return result(read(s, &b, 1));
}

static int c_sendmsg_socket(int s, pid_t t)
{
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

    (void)t;
    return result(sendmsg(s, &m, MSG_NOSIGNAL));
}

static int c_open(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
}

static int c_openat(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(syscall(SYS_openat, AT_FDCWD, "/", O_RDONLY | O_DIRECTORY));
}

static int c_socket(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
}

static int c_socketpair(int s, pid_t t)
{
    int sv[2];

    (void)s;
    (void)t;
    return result(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
}

static int c_fork(int s, pid_t t)
{
    pid_t pid;

    (void)s;
    (void)t;
    pid = fork();
    if (pid == 0)
        _exit(0);
    return result(pid);
}

/* clone with CLONE_THREAD but without CLONE_SIGHAND and CLONE_VM: the kernel itself refuses
 * that (EINVAL), so an unfiltered call creates nothing; the filter, which refuses every clone,
 * answers first (EPERM). */
static int c_clone_thread(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(syscall(SYS_clone, (unsigned long)(CLONE_THREAD | CLONE_PIDFD), 0, 0, 0, 0));
}

static int c_clone3(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(syscall(SYS_clone3, NULL, 0));
}

static int c_exec(int s, pid_t t)
{
    char *const argv[] = {"waygate-none", NULL};

    (void)s;
    (void)t;
    return result(execve("/nonexistent/waygate-none", argv, argv + 1));
}

static int c_ptrace(int s, pid_t t)
{
    (void)s;
    return result(syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, t, 0, 0));
}

static int c_vm_read(int s, pid_t t)
{
    char b[8], there[8];
    struct iovec local = {b, sizeof(b)}, remote = {there, sizeof(there)};

    (void)s;
    return result(process_vm_readv(t, &local, 1, &remote, 1, 0));
}

static int c_prlimit_test(int s, pid_t t)
{
    struct rlimit lim;

    (void)s;
    return result(prlimit(t, RLIMIT_NOFILE, NULL, &lim));
}

static int c_renice_test(int s, pid_t t)
{
    (void)s;
    return result(setpriority(PRIO_PROCESS, (id_t)t, 19));
}

static int c_getsid_test(int s, pid_t t)
{
    (void)s;
    return result(getsid(t));
}

static int c_sched_test(int s, pid_t t)
{
    (void)s;
    return result(sched_getscheduler(t));
}

static int c_clock_test(int s, pid_t t)
{
    struct timespec ts;

    (void)s;
    return result(syscall(SYS_clock_gettime, cpu_clock_of(t), &ts));
}

static int c_setsid(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(setsid()); /* the child leads no group: unfiltered, this succeeds */
}

static int c_ioctl(int s, pid_t t)
{
    int n;

    (void)t;
    return result(ioctl(s, FIONREAD, &n));
}

static int c_io_uring(int s, pid_t t)
{
    unsigned char params[120];

    (void)s;
    (void)t;
    memset(params, 0, sizeof(params));
    return result(syscall(425 /* io_uring_setup, x86_64 and aarch64 alike */, 4, params));
}

static int c_prctl_dumpable_on(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
}

#ifdef __x86_64__
static int c_x32(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(syscall(0x40000000L | SYS_getpid));
}

/* getpid through the 32-bit entry (int 0x80: i386's number 20). */
static int c_int80(int s, pid_t t)
{
    long rc = 20;

    (void)s;
    (void)t;
    __asm__ volatile("int $0x80" : "+a"(rc) : : "memory");
    return rc > 0 ? 0 : (int)-rc;
}
#endif

struct case_ {
    const char *name;
    int (*call)(int sock, pid_t test);
    int want; /* 0, an errno, or KILLED */
};

static const struct case_ cases[] = {
    /* what the hashing process needs */
    {"getpid", c_getpid, 0},
    {"send on its socket", c_send_socket, 0},
    {"recv on its socket", c_recv_socket, 0},
    {"memory", c_memory, 0},
    {"a new thread (its threads exist before the filter)", c_thread, EPERM},
    {"getrandom", c_random, 0},
    {"clock_gettime(CLOCK_MONOTONIC)", c_clock_monotonic, 0},
    {"clock_gettime(its own CPU clock)", c_clock_own_cpu, 0},
    {"clock_nanosleep", c_sleep, 0},
    {"fcntl(F_GETFD)", c_fcntl_getfd, 0},
    {"fcntl(F_GETFL)", c_fcntl_getfl, 0},
    {"getsid(0)", c_getsid_self, 0},
    {"sched_getscheduler(0)", c_sched_self, 0},
    {"prctl(PR_GET_DUMPABLE)", c_dumpable, 0},
    {"tgkill of itself (abort)", c_tgkill_self, 0},
    {"sched_getaffinity", c_affinity, ENOSYS},
    {"clone3", c_clone3, EPERM},
    /* another process */
    {"kill(victim)", c_kill_test, EPERM},
    {"tgkill(victim)", c_tgkill_test, EPERM},
    {"rt_sigqueueinfo(victim)", c_sigqueue_test, EPERM},
    {"pidfd_open(victim)", c_pidfd_test, EPERM},
    {"fcntl(F_SETOWN victim)", c_fcntl_setown, EPERM},
    {"fcntl(F_SETSIG)", c_fcntl_setsig, EPERM},
    {"fcntl(F_SETFL O_ASYNC)", c_fcntl_setfl, EPERM},
    {"ptrace(PTRACE_ATTACH victim)", c_ptrace, EPERM},
    {"process_vm_readv(victim)", c_vm_read, EPERM},
    {"prlimit(victim)", c_prlimit_test, EPERM},
    {"setpriority(victim)", c_renice_test, EPERM},
    {"getsid(victim)", c_getsid_test, EPERM},
    {"sched_getscheduler(victim)", c_sched_test, EPERM},
    {"sched_getparam(victim)", c_sched_param_test, EPERM},
    {"clock_getres(the victim's CPU clock)", c_clock_res_test, EPERM},
    {"clock_nanosleep(the victim's CPU clock)", c_clock_sleep_test, EPERM},
    {"clock_gettime(the victim's CPU clock)", c_clock_test, EPERM},
    /* new descriptors, files, the network, stdio */
    {"fcntl(F_DUPFD)", c_dupfd, EPERM},
    {"sendto(stdout)", c_send_stdout, EPERM},
    {"write(stdout)", c_write_stdout, EPERM},
    {"read(its socket)", c_read_socket, EPERM},
    {"recv(stdin)", c_recv_other, EPERM},
    {"sendmsg(its socket)", c_sendmsg_socket, EPERM},
    {"ioctl", c_ioctl, EPERM},
    {"open", c_open, EPERM},
    {"openat", c_openat, EPERM},
    {"socket", c_socket, EPERM},
    {"socketpair", c_socketpair, EPERM},
    {"io_uring_setup", c_io_uring, EPERM},
    /* new processes, namespaces, exec, its own state */
    {"fork", c_fork, EPERM},
    {"clone(CLONE_THREAD)", c_clone_thread, EPERM},
    {"execve", c_exec, EPERM},
    {"setsid", c_setsid, EPERM},
    {"prctl(PR_SET_DUMPABLE 1)", c_prctl_dumpable_on, EPERM},
#ifdef __x86_64__
    /* another architecture's numbering */
    {"x32 getpid", c_x32, KILLED},
    {"int 0x80 getpid", c_int80, KILLED},
#endif
};

/* A process for the calls to aim at: it waits to be killed. */
static pid_t victim(void)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        for (;;)
            pause();
    return pid;
}

static void end_victim(pid_t pid)
{
    int st;

    assert_int_equal(kill(pid, SIGKILL), 0);
    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
}

/* Runs call in a child under the filter: its exit code, KILLED, or fails the test. */
static int zygote_oom_fd = -1; /* the descriptor the zygote's filter lets it write: a pipe here */

enum filter { FILTER_COMPUTE, FILTER_ZYGOTE };

/* Runs c in a child under the filter f (gw_sandbox_enter, or gw_sandbox_enter_zygote with a pipe
 * as its oom_score_adj descriptor); its exit status, or KILLED, or 1000 + another signal. */
static int run_case(const struct case_ *c, enum filter f)
{
    int sv[2], oom[2] = {-1, -1}, st, rc;
    pid_t test = victim(), pid;

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    if (f == FILTER_ZYGOTE)
        assert_int_equal(pipe(oom), 0);
    assert_int_equal(send(sv[0], "y", 1, 0), 1);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        alarm(60); /* a call a broken filter leaves hanging ends the child, not the test */
        if (f == FILTER_ZYGOTE) {
            close(oom[0]);
            zygote_oom_fd = oom[1];
            rc = gw_sandbox_enter_zygote(sv[1], oom[1]);
        } else {
            rc = gw_sandbox_prepare(sv[1]);
            if (rc == 0)
                rc = gw_sandbox_enter();
        }
        if (rc != 0)
            _exit(200); /* the filter did not go on */
        _exit(c->call(sv[1], test));
    }
    close(sv[1]);
    if (f == FILTER_ZYGOTE)
        close(oom[1]);
    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    close(sv[0]);
    if (f == FILTER_ZYGOTE)
        close(oom[0]);
    end_victim(test);
    if (WIFSIGNALED(st))
        return WTERMSIG(st) == SIGSYS ? KILLED : 1000 + WTERMSIG(st);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 200)
        fail_msg("%s%s: the filter did not go on", f == FILTER_ZYGOTE ? "zygote: " : "", c->name);
    return WEXITSTATUS(st);
}

/* Whether the kernel has the 32-bit entry (IA32 emulation): an unfiltered int 0x80 works. */
static bool has_int80(void)
{
#ifdef __x86_64__
    int st;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        /* without the entry the kernel answers SIGSEGV: die of it, not in cmocka's handler, which
         * would run the rest of the tests in this child */
        signal(SIGSEGV, SIG_DFL);
        _exit(c_int80(0, 0));
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
#else
    return false;
#endif
}

/* Each of n cases under filter f, every mismatch printed (label first), then failed at once. */
static void check_cases(const char *label, const struct case_ *c, size_t n, enum filter f)
{
    int failed = 0;
    bool int80 = has_int80();

    (void)int80; /* x86_64 only */
    for (size_t i = 0; i < n; i++) {
        int got;

#ifdef __x86_64__
        if (c[i].call == c_int80 && !int80) {
            print_message("skipped: %s (no 32-bit entry in this kernel)\n", c[i].name);
            continue;
        }
#endif
        got = run_case(&c[i], f);
        if (got != c[i].want) {
            print_error("%s%s: got %d (%s), want %d (%s)\n", label, c[i].name, got,
                        got == KILLED           ? "killed"
                        : got > 0 && got < 1000 ? strerror(got)
                                                : "-",
                        c[i].want, c[i].want == KILLED ? "killed" : strerror(c[i].want));
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

static void test_each_call(void **state)
{
    (void)state;
    check_cases("", cases, sizeof(cases) / sizeof(cases[0]), FILTER_COMPUTE);
}

/* A call with no filter, and its exit status then. */
struct plain {
    int (*call)(int, pid_t);
    int unfiltered;
};

/* Each call run unfiltered must exit with its own status: the filtered case's answer is the
 * filter's doing, not the call's. */
static void check_unfiltered(const char *label, const struct plain *plain, size_t n)
{
    int sv[2], st;

    for (size_t i = 0; i < n; i++) {
        pid_t test = victim(), pid;

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(plain[i].call(sv[1], test));
        while (waitpid(pid, &st, 0) < 0)
            assert_int_equal(errno, EINTR);
        close(sv[0]);
        close(sv[1]);
        end_victim(test);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) != plain[i].unfiltered)
            fail_msg("%scase %zu unfiltered: %d, want %d", label, i, WEXITSTATUS(st),
                     plain[i].unfiltered);
    }
}

/* The same calls without the filter behave otherwise (each case's want is the filter's doing,
 * not the call's): checked for the refusals that an unfiltered call would not give. */
static void test_unfiltered_differs(void **state)
{
    static const struct plain plain[] = {
        {c_kill_test, 0},   {c_tgkill_test, 0},  {c_fcntl_setown, 0},     {c_getsid_test, 0},
        {c_clock_test, 0},  {c_setsid, 0},       {c_exec, ENOENT},        {c_clone_thread, EINVAL},
        {c_dupfd, 0},       {c_open, 0},         {c_socket, 0},           {c_thread, 0},
        {c_clone3, EINVAL}, {c_prlimit_test, 0}, {c_sched_param_test, 0}, {c_clock_res_test, 0},
    };

    (void)state;
    check_unfiltered("", plain, sizeof(plain) / sizeof(plain[0]));
}

/* ---- the zygote's filter (gw_sandbox_enter_zygote) ---- */

static int c_write_oom(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(write(zygote_oom_fd, "1000", 4));
}

static int c_socketpair_seqpacket(int s, pid_t t)
{
    int sv[2];

    (void)s;
    (void)t;
    return result(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
}

/* The zygote's work: fork a child (glibc's fork), open its pidfd, wait for its end, reap it. */
static int c_fork_and_reap(int s, pid_t t)
{
    struct pollfd { /* <poll.h> would clash with nothing, but keep the includes as they are */
        int fd;
        short events, revents;
    } p;
    int st;
    long pidfd;
    pid_t pid;

    (void)s;
    (void)t;
    pid = fork();
    if (pid == 0)
        _exit(7);
    if (pid < 0)
        return errno;
    pidfd = syscall(SYS_pidfd_open, pid, 0u);
    if (pidfd < 0)
        return errno;
    p.fd = (int)pidfd;
    p.events = 1; /* POLLIN: the child has ended */
    if (syscall(SYS_poll, &p, 1, -1) != 1)
        return errno != 0 ? errno : 255;
    if (waitpid(pid, &st, 0) != pid)
        return errno;
    return WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : 254;
}

/* Ending a child through its pidfd: SIGKILL only. */
static int signal_own_child(int sig)
{
    int st, rc;
    long pidfd;
    pid_t pid = fork();

    if (pid == 0)
        for (;;)
            pause();
    if (pid < 0)
        return errno;
    pidfd = syscall(SYS_pidfd_open, pid, 0u);
    if (pidfd < 0)
        return errno;
    rc = result(syscall(SYS_pidfd_send_signal, (int)pidfd, sig, NULL, 0u));
    if (rc != 0)
        (void)syscall(SYS_pidfd_send_signal, (int)pidfd, SIGKILL, NULL, 0u);
    if (waitpid(pid, &st, 0) != pid)
        return errno;
    return rc;
}

static int c_pidfd_kill_child(int s, pid_t t)
{
    (void)s;
    (void)t;
    return signal_own_child(SIGKILL);
}

static int c_pidfd_term_child(int s, pid_t t)
{
    (void)s;
    (void)t;
    return signal_own_child(SIGTERM);
}

/* A child of the zygote puts the compute-only filter on under the zygote's (filters stack): its
 * socket still works, and what the zygote's filter allows but the compute-only one does not
 * (socketpair, fork) is refused. 0 when all of that holds. */
static int c_child_filter_stacks(int s, pid_t t)
{
    int st, rc;
    pid_t pid;

    (void)t;
    pid = fork();
    if (pid == 0) {
        int sv[2];

        rc = gw_sandbox_prepare(s);
        if (rc == 0)
            rc = gw_sandbox_enter();
        if (rc != 0)
            _exit(100);
        if (c_send_socket(s, 0) != 0)
            _exit(101);
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0 || errno != EPERM)
            _exit(102);
        if (c_fork(s, 0) != EPERM)
            _exit(103);
        _exit(0);
    }
    if (pid < 0)
        return errno;
    if (waitpid(pid, &st, 0) != pid)
        return errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

/* A worker process's own set-up under the zygote's filter: SCHED_IDLE, or nice +19, on itself. */
static int c_idle_self(int s, pid_t t)
{
    struct sched_param sp = {.sched_priority = 0};

    (void)s;
    (void)t;
    return result(syscall(SYS_sched_setscheduler, 0, SCHED_IDLE, &sp));
}

static int c_idle_test(int s, pid_t t)
{
    struct sched_param sp = {.sched_priority = 0};

    (void)s;
    return result(syscall(SYS_sched_setscheduler, t, SCHED_IDLE, &sp));
}

static int c_nice_self(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(setpriority(PRIO_PROCESS, 0, 19));
}

static int c_name(int s, pid_t t)
{
    (void)s;
    (void)t;
    return result(prctl(PR_SET_NAME, "waygate-test", 0, 0, 0));
}

static int c_dup2(int s, pid_t t)
{
    (void)t;
    return result(dup2(s, 40));
}

/* fork() with a new user namespace: clone flags the zygote never uses. */
static int c_clone_newuser(int s, pid_t t)
{
    long pid;

    (void)s;
    (void)t;
    pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        (void)waitpid((pid_t)pid, NULL, 0);
    return result(pid);
}

static int c_connect(int s, pid_t t)
{
    struct sockaddr sa = {.sa_family = AF_UNIX};

    (void)t;
    return result(connect(s, &sa, sizeof(sa.sa_family)));
}

static const struct case_ zygote_cases[] = {
    /* what the zygote does */
    {"getpid", c_getpid, 0},
    {"recv on its socket", c_recv_socket, 0},
    {"send on its socket", c_send_socket, 0},
    {"sendmsg on its socket", c_sendmsg_socket, 0},
    {"socketpair(AF_UNIX, SOCK_SEQPACKET)", c_socketpair_seqpacket, 0},
    {"fork, pidfd_open, poll, waitpid", c_fork_and_reap, 0},
    {"pidfd_send_signal(its child, SIGKILL)", c_pidfd_kill_child, 0},
    {"write(its oom_score_adj)", c_write_oom, 0},
    {"memory", c_memory, 0},
    {"tgkill of itself (abort)", c_tgkill_self, 0},
    /* what a child of it does before its own filter */
    {"a new thread (clone3 answers ENOSYS, clone then)", c_thread, 0},
    {"clone3", c_clone3, ENOSYS},
    {"dup2", c_dup2, 0},
    {"prctl(PR_SET_NAME)", c_name, 0},
    {"sched_setscheduler(itself, SCHED_IDLE)", c_idle_self, 0},
    {"setpriority(itself, 19)", c_nice_self, 0},
    {"its own filter on top", c_child_filter_stacks, 0},
    /* files, the network, programs */
    {"open", c_open, EPERM},
    {"openat", c_openat, EPERM},
    {"socket", c_socket, EPERM},
    {"socketpair(AF_UNIX, SOCK_STREAM)", c_socketpair, EPERM},
    {"connect(its socket)", c_connect, EPERM},
    {"execve", c_exec, EPERM},
    {"io_uring_setup", c_io_uring, EPERM},
    {"ioctl", c_ioctl, EPERM},
    {"write(stdout)", c_write_stdout, EPERM},
    {"sendto(stdout)", c_send_stdout, EPERM},
    {"read(its socket)", c_read_socket, EPERM},
    {"fcntl(F_DUPFD)", c_dupfd, EPERM},
    /* other processes */
    {"kill(victim)", c_kill_test, EPERM},
    {"tgkill(victim)", c_tgkill_test, EPERM},
    {"rt_sigqueueinfo(victim)", c_sigqueue_test, EPERM},
    {"pidfd_send_signal(its child, SIGTERM)", c_pidfd_term_child, EPERM},
    {"fcntl(F_SETOWN victim)", c_fcntl_setown, EPERM},
    {"ptrace(PTRACE_ATTACH victim)", c_ptrace, EPERM},
    {"process_vm_readv(victim)", c_vm_read, EPERM},
    {"prlimit(victim)", c_prlimit_test, EPERM},
    {"setpriority(victim)", c_renice_test, EPERM},
    {"sched_setscheduler(victim, SCHED_IDLE)", c_idle_test, EPERM},
    /* its own state, namespaces */
    {"setsid", c_setsid, EPERM},
    {"prctl(PR_SET_DUMPABLE 1)", c_prctl_dumpable_on, EPERM},
    {"clone(CLONE_NEWUSER)", c_clone_newuser, EPERM},
#ifdef __x86_64__
    {"x32 getpid", c_x32, KILLED},
#endif
};

/* Runs call in a child under the zygote's filter (its socket: one end of a socket pair; its oom
 * descriptor: a pipe): its exit code, KILLED, or fails the test. */
/* The zygote's filter, call by call: what it and a child of it before its own filter need works,
 * the child's own filter goes on top, and files, the network, exec and signals to other processes
 * are refused (EPERM). */
static void test_zygote_each_call(void **state)
{
    (void)state;
    check_cases("zygote: ", zygote_cases, sizeof(zygote_cases) / sizeof(zygote_cases[0]),
                FILTER_ZYGOTE);
}

/* The zygote's refusals are the filter's doing: unfiltered, the same calls succeed (or fail
 * otherwise). */
static void test_zygote_unfiltered_differs(void **state)
{
    static const struct plain plain[] = {
        {c_open, 0},        {c_openat, 0},    {c_socket, 0},
        {c_exec, ENOENT},   {c_kill_test, 0}, {c_setsid, 0},
        {c_socketpair, 0},  {c_idle_test, 0}, {c_pidfd_term_child, 0},
        {c_clone3, EINVAL},
    };

    (void)state;
    check_unfiltered("zygote ", plain, sizeof(plain) / sizeof(plain[0]));
}

/* gw_sandbox_refuse_for_tests: nothing is installed, the error comes back. */
static void test_refused_for_tests(void **state)
{
    int st;
    pid_t pid;

    (void)state;
    gw_sandbox_refuse_for_tests(EINVAL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (gw_sandbox_prepare(0) != EINVAL || gw_sandbox_enter() != EINVAL ||
            gw_sandbox_enter_zygote(0, -1) != EINVAL)
            _exit(1);
        _exit(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0 && kill(getppid(), 0) == 0 ? 0 : 2);
    }
    gw_sandbox_refuse_for_tests(0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_call),         cmocka_unit_test(test_unfiltered_differs),
        cmocka_unit_test(test_zygote_each_call),  cmocka_unit_test(test_zygote_unfiltered_differs),
        cmocka_unit_test(test_refused_for_tests),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
