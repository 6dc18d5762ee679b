"""Password hashing runs in a process of its own (gateway/core/workers.c), forked by a zygote that
the gateway forked before it read any key (so that a replacement holds none of them), in
a session of its own (the zygote's: its own autogroup, at nice +19, where the kernel groups by
session), its threads under SCHED_IDLE, in the idle cgroup [auth] worker_cgroup names (the dev
stack sets one where the machine allows it; the zygote joins it, its children inherit it), not
dumpable, holding no descriptor but its socket and stdio, deaf to the signals sent to a whole unit,
every thread of it under its system-call filter (seccomp, gateway/core/sandbox.c; what the filter
refuses is tests/unit/test_workers.c's test_sandbox_refuses) and under the zygote's, which the
zygote runs under itself (tests/unit/test_sandbox.c's test_zygote_each_call); the gateway itself
runs no other thread. Killed, it is
replaced at the next Login; a Login whose hash was in it when it died answers UNAVAILABLE (and
counts no failed attempt), never a refusal."""
import base64
import os
import signal
import threading
import time

import grpc
import pytest

from conftest import HASHING_DEADLINE, wait_for
from test_metrics import scrape, value

SCHED_IDLE = 5
UNAVAILABLE_MSG = "password hashing unavailable; retrying is safe"


def only_child(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        kids = [int(p) for p in f.read().split()]
    assert len(kids) == 1, kids
    return kids[0]


def zygote(stack):
    """The gateway's one child process (the zygote): its pid."""
    return only_child(stack.gateway_pid())


def hasher(stack):
    """The zygote's one child process (the password-hashing process): its pid."""
    return only_child(zygote(stack))


def stat_fields(path):
    """/proc/.../stat split after the command name (field 3 of proc(5) is [0])."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def worker_cgroup(stack):
    """[auth] worker_cgroup of the stack's waygated.conf, or None."""
    section = ""
    with open(os.path.join(stack.dir, "waygated.conf")) as f:
        for line in f:
            st = line.strip()
            if st.startswith("["):
                section = st
            elif section == "[auth]" and st.startswith("worker_cgroup"):
                return st.split("=", 1)[1].strip()
    return None


def login_ok(stack, name="clerk_a"):
    """A Login that succeeds, retried only while it answers UNAVAILABLE (a replacement process is
    forked at most once a second); any other refusal fails the test."""
    deadline = time.monotonic() + HASHING_DEADLINE
    while True:
        try:
            return stack.login_response(name).token
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def status_of(path):
    """/proc/.../status as a dict of stripped values."""
    with open(path) as f:
        return {k: v.strip() for k, v in
                (line.split(":", 1) for line in f.read().splitlines() if ":" in line)}


def assert_filtered(pid):
    """Every thread of pid runs under a seccomp filter, with no_new_privs."""
    for t in os.listdir("/proc/%d/task" % pid):
        st = status_of("/proc/%d/task/%s/status" % (pid, t))
        assert st["Seccomp"] == "2", (pid, t, st["Seccomp"])  # SECCOMP_MODE_FILTER
        assert st["NoNewPrivs"] == "1", (pid, t)


def test_hashing_runs_in_a_process_of_its_own(stack):
    login_ok(stack)
    gw, zy, pid = stack.gateway_pid(), zygote(stack), hasher(stack)
    with open("/proc/%d/comm" % pid) as f:
        assert f.read().strip() == "waygated-work"
    with open("/proc/%d/comm" % zy) as f:
        assert f.read().strip() == "waygated-zygote"
    st = stat_fields("/proc/%d/stat" % pid)
    assert int(st[1]) == zy            # its parent is the zygote, the gateway's child
    assert int(st[3]) == zy            # in a session of its own: the zygote's, not the gateway's
    assert int(stat_fields("/proc/%d/stat" % gw)[3]) != zy
    threads = os.listdir("/proc/%d/task" % pid)
    assert len(threads) == 2           # [auth] workers, the dev stack's default
    for t in threads:
        assert int(stat_fields("/proc/%d/task/%s/stat" % (pid, t))[38]) == SCHED_IDLE, t
    assert_filtered(pid)
    assert_filtered(zy)                # the zygote has a filter of its own
    with open("/proc/%d/oom_score_adj" % pid) as f:
        assert f.read().strip() == "1000"  # the OOM killer's first choice, not the gateway
    with open("/proc/%d/oom_score_adj" % zy) as f, open("/proc/%d/oom_score_adj" % gw) as g:
        assert f.read() == g.read()    # the zygote is not (lost, it is not replaced)
    # the zygote: one filter more than the gateway's (which has none of Waygate's own; a container
    # may add); the hashing process: two more, the zygote's and its own
    gst, zst = status_of("/proc/%d/status" % gw), status_of("/proc/%d/status" % zy)
    wst = status_of("/proc/%d/status" % pid)
    if "Seccomp_filters" in wst:  # Linux 5.9 and later
        assert int(zst["Seccomp_filters"]) == int(gst["Seccomp_filters"]) + 1
        assert int(wst["Seccomp_filters"]) == int(gst["Seccomp_filters"]) + 2
    assert not any("without its system-call filter" in line for line in stack.log_lines())
    assert os.listdir("/proc/%d/task" % gw) == [str(gw)]  # the gateway: its loop alone
    if os.path.exists("/proc/self/autogroup"):
        with open("/proc/%d/autogroup" % pid) as f:
            assert f.read().split()[-1] == "19"
        with open("/proc/%d/autogroup" % gw) as f:
            assert f.read().split()[-1] == "0"
    cg = worker_cgroup(stack)
    if cg is not None:  # the dev stack sets [auth] worker_cgroup where the machine allows it
        with open(os.path.join(cg, "cpu.idle")) as f:
            assert f.read().strip() == "1"
        with open(os.path.join(cg, "cgroup.procs")) as f:
            assert str(pid) in f.read().split()
        with open("/proc/%d/cgroup" % gw) as f:
            assert os.path.basename(cg) not in f.read()  # the gateway stays where it was
    fds = sorted(int(fd) for fd in os.listdir("/proc/%d/fd" % pid))
    assert fds == [0, 1, 2, 3], fds
    assert os.readlink("/proc/%d/fd/3" % pid).startswith("socket:")
    # stdio leads nowhere: not the gateway's log, not its terminal
    assert [os.readlink("/proc/%d/fd/%d" % (pid, fd)) for fd in (0, 1, 2)] == ["/dev/null"] * 3
    with open("/proc/%d/status" % pid) as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    assert int(status["Uid"].split()[0]) == os.stat("/proc/%d" % gw).st_uid
    # not dumpable: /proc/PID is then owned by root whatever the process's user
    assert os.stat("/proc/%d" % pid).st_uid == 0
    # the signals a service manager sends to every process of a unit are the gateway's to act on
    # the zygote: not dumpable either; nothing of the gateway's open, only stdio (/dev/null), its
    # socket, its own oom_score_adj (raised around each fork) and a pidfd of its one child
    assert os.stat("/proc/%d" % zy).st_uid == 0
    zfds = sorted(int(fd) for fd in os.listdir("/proc/%d/fd" % zy))
    assert zfds[:4] == [0, 1, 2, 3] and len(zfds) == 6, zfds
    assert [os.readlink("/proc/%d/fd/%d" % (zy, fd)) for fd in (0, 1, 2)] == ["/dev/null"] * 3
    assert os.readlink("/proc/%d/fd/3" % zy).startswith("socket:")
    assert sorted(os.readlink("/proc/%d/fd/%d" % (zy, fd)) for fd in zfds[4:]) == [
        "/proc/%d/oom_score_adj" % zy, "anon_inode:[pidfd]"]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        os.kill(pid, sig)
        os.kill(zy, sig)
    login_ok(stack)
    assert hasher(stack) == pid and zygote(stack) == zy


def test_a_killed_hashing_process_is_replaced(stack):
    login_ok(stack)
    before = value(scrape(stack)[0], "waygate_auth_process_deaths_total")
    old = hasher(stack)
    os.kill(old, signal.SIGKILL)
    zy = zygote(stack)
    assert wait_for(lambda: not os.path.exists("/proc/%d" % old), 30)  # reaped by the zygote
    assert value(scrape(stack)[0], "waygate_auth_process_deaths_total") == before + 1
    login_ok(stack)
    new = hasher(stack)
    assert new != old and zygote(stack) == zy
    assert_filtered(new)
    assert_filtered(zy)  # the zygote forked it under its own filter
    with open("/proc/%d/oom_score_adj" % new) as f:
        assert f.read().strip() == "1000"
    assert value(scrape(stack)[0], "waygate_auth_process_deaths_total") == before + 1
    assert any("password-hashing process %d exited" % old in line for line in stack.log_lines())


def test_a_login_in_flight_when_the_process_dies_is_unavailable(stack):
    account = stack.account("clerk_a")[0]
    login_ok(stack)
    failed = stack.psql("SELECT failed_count FROM account WHERE name = '%s'" % account)
    pid = hasher(stack)
    os.kill(pid, signal.SIGSTOP)
    out = {}

    def call():
        try:
            out["token"] = stack.login_response("clerk_a").token
        except grpc.RpcError as e:
            out["error"] = (e.code(), e.details())

    t = threading.Thread(target=call)
    try:
        t.start()
        # the hash is in the stopped process, waiting for a thread
        assert wait_for(lambda: value(scrape(stack)[0], "waygate_auth_jobs") == 1, 30)
        assert t.is_alive()
    finally:
        os.kill(pid, signal.SIGKILL)
        t.join(60)
    assert out.get("error") == (grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MSG), out
    assert stack.psql("SELECT failed_count FROM account WHERE name = '%s'" % account) == failed
    rows = stack.psql("SELECT outcome, detail FROM admin_log WHERE action = 'Login' AND "
                      "object = '%s' ORDER BY id DESC LIMIT 1" % account)
    assert rows == ["error|" + UNAVAILABLE_MSG], rows
    login_ok(stack)
    assert value(scrape(stack)[0], "waygate_auth_jobs") == 0


def outcome(call):
    """"ok" when call() returns, else the (code, details) of the gRPC error it raised."""
    try:
        call()
        return "ok"
    except grpc.RpcError as e:
        return (e.code(), e.details())


def test_one_certificate_holds_at_most_its_share_of_the_hashing_queue(stack):
    """The hashing queue holds 64 jobs; the calls over one certificate hold at most 8 of them
    (GW_API_AUTH_SHARE), so a device or branch certificate that keeps Logins in flight cannot keep
    everyone else from logging in. With the hashing process stopped, jobs stay queued: 8 Logins
    over branch_a's certificate are taken, the 9th is refused at once, and one over branch_b's
    is taken; all are answered once the process goes on."""
    pid = hasher(stack)
    results = {}
    lock = threading.Lock()

    def attempt(key, account, pw, principal):
        out = outcome(lambda: stack.login_response(account, pw, principal=principal, timeout=120))
        with lock:
            results[key] = out

    jobs = lambda: value(scrape(stack)[0], "waygate_auth_jobs")  # noqa: E731
    assert wait_for(lambda: jobs() == 0, 30)
    os.kill(pid, signal.SIGSTOP)
    threads = []
    try:
        for i in range(8):
            t = threading.Thread(target=attempt, args=(i, "it-share-%d" % i, "wrong", "branch_a"))
            t.start()
            threads.append(t)
        assert wait_for(lambda: jobs() == 8, 30), jobs()
        attempt("9th", "it-share-9", "wrong", "branch_a")  # answered while the 8 wait
        assert results["9th"] == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  "too many password checks in progress over this certificate "
                                  "(at most 8): retry later"), results["9th"]
        account, pw, _ = stack.account("clerk_b")
        t = threading.Thread(target=attempt, args=("other", account, pw, "branch_b"))
        t.start()
        threads.append(t)
        assert wait_for(lambda: jobs() == 9, 30), jobs()
    finally:
        os.kill(pid, signal.SIGCONT)
        for t in threads:
            t.join(120)
    assert results["other"] == "ok", results
    assert all(results[i][0] == grpc.StatusCode.UNAUTHENTICATED for i in range(8)), results
    assert wait_for(lambda: jobs() == 0, 30)
    # the places are given back: the certificate logs in again
    assert login_ok(stack, "clerk_a")


def test_a_password_change_takes_a_place_per_hash_of_the_certificates_share(stack):
    """A ChangePassword runs up to 8 hashes (the old password, the new one against the current
    and the five remembered, the new hash), so it takes that many of its certificate's 8 places:
    with the hashing process stopped, one such change over branch_a's certificate leaves no room
    for a Login over it (refused at once, naming the share), while branch_b's Login is taken; the
    change is answered once the process goes on. Before, it took one place: eight of them, each
    with a new password equal to the oldest remembered one (refused as reused, counting no
    failure, so sent without end), held 64 hashes."""
    from test_accounts import Admin, change, password, ready, unique
    admin = Admin(stack)
    name = unique("it-shw-")
    pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    stack.psql("INSERT INTO account_password_history (account_id, pw_hash, pw_salt, pw_params, "
               "set_at) SELECT id, pw_hash, pw_salt, pw_params, pw_set_at FROM account, "
               "generate_series(1, 5) WHERE name = '%s'" % name)
    pid = hasher(stack)
    results = {}
    jobs = lambda: value(scrape(stack)[0], "waygate_auth_jobs")  # noqa: E731

    def changing():
        results["change"] = outcome(lambda: change(stack, md, "branch_a", pw, password()))

    def logging_in(principal):
        return outcome(lambda: stack.login_response("clerk_b", principal=principal, timeout=120))
    assert wait_for(lambda: jobs() == 0, 30)
    os.kill(pid, signal.SIGSTOP)
    threads = []
    try:
        t = threading.Thread(target=changing)
        t.start()
        threads.append(t)
        assert wait_for(lambda: jobs() == 1, 30), jobs()
        assert logging_in("branch_a") == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                          "too many password checks in progress over this "
                                          "certificate (at most 8): retry later")
        t = threading.Thread(target=lambda: results.update(other=logging_in("branch_b")))
        t.start()
        threads.append(t)
        assert wait_for(lambda: jobs() == 2, 30), jobs()
    finally:
        os.kill(pid, signal.SIGCONT)
        for t in threads:
            t.join(120)
    assert results == {"change": "ok", "other": "ok"}, results
    assert wait_for(lambda: jobs() == 0, 30)


def test_a_right_old_password_locked_out_meanwhile_is_answered_as_a_wrong_one(stack):
    """ChangePassword with the right old password and that same password as the new one is
    refused as reused, which tells its caller the old password was right; so that answer waits
    for the database to confirm that the account is still unlocked and its password unchanged.
    With the hashing process stopped, the change's read is done and its hashes queued; the
    account is then locked (as five wrong guesses in flight beside it would lock it) and the
    process goes on: the answer is the wrong old password's, word for word, and counts nothing.
    Unlocked, the same call is refused as reused. Before, the reuse was answered from the hashes
    alone, after the lock: a token thief learnt the password past the lockout (review)."""
    from test_accounts import Admin, change, password, ready, unique
    admin = Admin(stack)
    name = unique("it-rrl-")
    pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    pid = hasher(stack)
    results = {}
    jobs = lambda: value(scrape(stack)[0], "waygate_auth_jobs")  # noqa: E731
    assert wait_for(lambda: jobs() == 0, 30)
    os.kill(pid, signal.SIGSTOP)
    t = threading.Thread(target=lambda: results.update(
        change=outcome(lambda: change(stack, md, "branch_a", pw, pw))))
    try:
        t.start()
        assert wait_for(lambda: jobs() == 1, 30), jobs()  # read, its hashes queued
        stack.psql("UPDATE account SET locked_until = now() + interval '1 hour' WHERE name = '%s'"
                   % name)
    finally:
        os.kill(pid, signal.SIGCONT)
        t.join(120)
    assert results["change"][0] == grpc.StatusCode.PERMISSION_DENIED, results
    assert stack.psql("SELECT failed_count FROM account WHERE name = '%s'" % name) == ["0"]
    stack.psql("UPDATE account SET locked_until = NULL WHERE name = '%s'" % name)
    refused = outcome(lambda: change(stack, md, "branch_a", pw, pw))
    assert refused[0] == grpc.StatusCode.INVALID_ARGUMENT, refused
    assert refused[1].startswith("new_password: must differ"), refused
    wrong = outcome(lambda: change(stack, md, "branch_a", "Wrong-" + pw, password()))
    assert results["change"] == wrong, (results, wrong)  # a wrong guess's words
    assert wait_for(lambda: jobs() == 0, 30)


def test_a_locked_accounts_login_runs_one_hash_whatever_its_parameters(stack):
    """A Login of an account hashed under other scrypt parameters hashes a right password again
    (test_accounts.py::test_a_login_hashes_again_a_password_hashed_under_other_parameters), and so
    takes two places of its certificate's share; but only when it can succeed: on a locked
    account that second hash would tell the right password from a wrong one by the time of the
    refusal, and the lock counts neither. With the hashing process stopped, eight Logins of such
    a locked account with its right password over branch_a's certificate are all queued, one
    place each, and all refused alike once the process goes on, the hash unchanged. Before, the
    fifth was refused at once (two places each)."""
    from test_accounts import password, unique
    name, pw = unique("it-lkrh-"), password()
    r = stack.ctl("accounts", "create", name, "--role", "branch_clerk", "--branch", "a",
                  "--person", unique("it-person-"), "--password-stdin", "--scrypt-n", "1024",
                  "--actor", "secadmin", "--db", stack.pguri, input=pw + "\n")
    assert r.returncode == 0, r.stderr
    stack.psql("UPDATE account SET locked_until = now() + interval '1 hour' WHERE name = '%s'"
               % name)
    hashed = stack.psql("SELECT pw_params, encode(pw_hash, 'hex') FROM account WHERE name = '%s'"
                        % name)
    pid = hasher(stack)
    results = {}
    lock = threading.Lock()
    jobs = lambda: value(scrape(stack)[0], "waygate_auth_jobs")  # noqa: E731

    def attempt(i):
        out = outcome(lambda: stack.login_response(name, pw, principal="branch_a", timeout=120))
        with lock:
            results[i] = out
    assert wait_for(lambda: jobs() == 0, 30)
    os.kill(pid, signal.SIGSTOP)
    threads = []
    try:
        for i in range(8):
            t = threading.Thread(target=attempt, args=(i,))
            t.start()
            threads.append(t)
            assert wait_for(lambda: jobs() == i + 1 or i in results, 30), (i, jobs(), results)
            assert i not in results, (i, results[i])
    finally:
        os.kill(pid, signal.SIGCONT)
        for t in threads:
            t.join(120)
    refused = (grpc.StatusCode.UNAUTHENTICATED, "account: login refused")
    assert all(results[i][0] == refused[0] for i in range(8)), results
    assert stack.psql("SELECT pw_params, encode(pw_hash, 'hex') FROM account WHERE name = '%s'"
                      % name) == hashed
    assert wait_for(lambda: jobs() == 0, 30)


def keyring_keys(stack):
    """Every key of the stack's keyring file, as bytes."""
    keys = []
    with open(os.path.join(stack.dir, "keyring")) as f:
        for line in f:
            t = line.split()
            if t and not t[0].startswith("#") and t[0] != "waygate-keyring" and len(t[-1]) == 44:
                keys.append(base64.b64decode(t[-1]))
    return keys


def keys_in_memory(pid, keys):
    """The indexes of those keys found anywhere in process pid's readable memory."""
    found = set()
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if "r" not in f[1] or (len(f) > 5 and f[5] in ("[vvar]", "[vsyscall]")):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            found.update(i for i, k in enumerate(keys) if k in data)
    return found


def test_a_replacement_holds_no_key(stack):
    """A hashing process forked after the gateway read its keyring (the one that replaces a lost
    process) comes from the zygote, forked before: none of the keyring's keys is anywhere in its
    memory, nor in the zygote's, while the same scan finds them in the gateway's."""
    if os.geteuid() != 0:
        pytest.skip("reading another process's memory (not dumpable) needs root")
    keys = keyring_keys(stack)
    assert len(keys) >= 5
    login_ok(stack)
    assert keys_in_memory(stack.gateway_pid(), keys)  # the scan finds them where they are
    zy, old = zygote(stack), hasher(stack)
    assert keys_in_memory(zy, keys) == set()
    assert keys_in_memory(old, keys) == set()
    os.kill(old, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists("/proc/%d" % old), 30)
    login_ok(stack)
    new = hasher(stack)
    assert new != old
    assert keys_in_memory(new, keys) == set()


def proc_state(pid):
    """A process's state letter, or None once it is gone (reaped)."""
    try:
        return stat_fields("/proc/%d/stat" % pid)[0]
    except FileNotFoundError:
        return None


def test_a_lost_zygote_turns_hashing_off(stack):
    """The zygote killed (a compromised hashing process could do it): its hashing process dies with
    it, and the gateway does not fork a new zygote from itself, which would hold its keys: every
    Login answers UNAVAILABLE, also after the respawn limit, until the gateway restarts; the log and
    waygate_auth_hashing_off say so. The gateway is restarted afterwards."""
    login_ok(stack)
    gw, zy, pid = stack.gateway_pid(), zygote(stack), hasher(stack)
    try:
        os.kill(zy, signal.SIGKILL)
        assert wait_for(lambda: proc_state(pid) in (None, "Z"), 30)  # PR_SET_PDEATHSIG
        for _ in range(3):
            time.sleep(1.1)  # past the respawn limit of the last fork: not what refuses here
            try:
                stack.login_response("clerk_a", timeout=30)
                raise AssertionError("a Login succeeded without a zygote")
            except grpc.RpcError as e:
                assert (e.code(), e.details()) == (grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MSG)
        assert value(scrape(stack)[0], "waygate_auth_hashing_off") == 1
        assert any("password hashing is off until the gateway restarts" in line
                   for line in stack.log_lines())
        with open("/proc/%d/task/%d/children" % (gw, gw)) as f:
            assert f.read().split() == []  # no zygote forked from the gateway
    finally:
        stack.restart_gateway()
    login_ok(stack)
    assert value(scrape(stack)[0], "waygate_auth_hashing_off") == 0
