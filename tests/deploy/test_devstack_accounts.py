#!/usr/bin/python3
"""test_devstack_accounts.py: deploy/devstack-accounts' password change against a busy gateway.

A dev stack brought up on a loaded machine (a parallel build, CI's two cores) can have its
idle-priority password hashing starved: a Login or ChangePassword then answers DEADLINE_EXCEEDED,
UNAVAILABLE or RESOURCE_EXHAUSTED. The accounts must still end ready (their one-time password
changed) and their stored password must be the one the gateway holds, also when a change took
but its answer was lost. A refusal is not asked again. The gateway here is a fake (no network):
it answers the two methods from a script of outcomes and keeps the account's password as the
real one would.

    test_devstack_accounts.py

Exit 0 when every case holds; 1 and the failed cases otherwise. Runs under ctest (label unit).
"""

import importlib.machinery
import importlib.util
import os
import sys
import time
import types

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script():
    path = os.path.join(ROOT, "deploy", "devstack-accounts")
    loader = importlib.machinery.SourceFileLoader("devstack_accounts", path)
    spec = importlib.util.spec_from_loader("devstack_accounts", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class Fault(grpc.RpcError):
    def __init__(self, code):
        super().__init__()
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "fake " + self._code.name


class Gateway:
    """One account with a one-time password. script: per call, in order, None (answer) or a
    status code to fail with; "lost" for ChangePassword: the change takes, the answer is lost."""

    def __init__(self, password, script):
        self.password, self.initial, self.script, self.calls = password, True, list(script), []

    def unary(self, ch, method, req, resp_type, timeout=None, metadata=None):
        name = method.rsplit("/", 1)[1]
        self.calls.append(name)
        step = self.script.pop(0) if self.script else None
        if step is not None and step != "lost":
            raise Fault(step)
        if name == "Login":
            if req.password != self.password:
                raise Fault(grpc.StatusCode.UNAUTHENTICATED)
            return types.SimpleNamespace(must_change_password=self.initial, token="t")
        assert name == "ChangePassword" and req.old_password == self.password
        self.password, self.initial = req.new_password, False
        if step == "lost":
            raise Fault(grpc.StatusCode.DEADLINE_EXCEEDED)
        return object()


class Channel:
    def close(self):
        pass


def run(mod, script):
    gw = Gateway("one-time", script)
    mod.waygate_proto.channel = lambda *a, **k: Channel()
    mod.waygate_proto.unary = gw.unary
    pb = types.SimpleNamespace(admin=types.SimpleNamespace(
        LoginRequest=lambda **k: types.SimpleNamespace(**k),
        ChangePasswordRequest=lambda **k: types.SimpleNamespace(**k),
        LoginResponse=None, ChangePasswordResponse=None))
    env = {"addr": "x", "ca": "ca", "certs": "certs"}
    got = mod.change(env, pb, "clerk_a", "branch_a", "one-time")
    return gw, got


def main():
    mod = load_script()
    time.sleep = lambda s: None  # the script's pauses between tries
    mod.say = lambda msg: None
    S = grpc.StatusCode
    failures = []

    def check(what, cond):
        if not cond:
            failures.append(what)

    # a busy Login, twice, then the change: ready, with the gateway's password
    gw, got = run(mod, [S.DEADLINE_EXCEEDED, S.RESOURCE_EXHAUSTED])
    check("busy login: changed", got is not None and got == gw.password and not gw.initial)
    check("busy login: asked again", gw.calls == ["Login"] * 3 + ["ChangePassword"])

    # the change fails while busy and did not take: logged in again, changed
    gw, got = run(mod, [None, S.UNAVAILABLE])
    check("busy change: changed", got is not None and got == gw.password and not gw.initial)

    # the change took, its answer lost: found with the new password, which is kept
    gw, got = run(mod, [None, "lost"])
    check("lost answer: the new password kept", got is not None and got == gw.password)
    check("lost answer: checked by logging in", gw.calls == ["Login", "ChangePassword",
                                                              "Login", "Login"])

    # a refusal is not asked again
    gw, got = run(mod, [S.PERMISSION_DENIED])
    check("refusal: none", got is None and gw.calls == ["Login"] and gw.initial)

    # busy every time: given up after TRIES, the account keeps its one-time password
    gw, got = run(mod, [S.UNAVAILABLE] * 10)
    check("always busy: none", got is None and gw.initial)
    check("always busy: bounded", gw.calls == ["Login"] * mod.TRIES)

    for f in failures:
        print("FAILED: " + f)
    print("test_devstack_accounts: %s" % ("ok" if not failures else "%d failed" % len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
