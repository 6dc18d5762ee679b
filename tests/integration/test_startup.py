"""The daemon refuses to start on a bad configuration or an unsafe keyring, and says why: the
file, the line and the key for a bad value (issue 2), the path and the mode for a keyring that
group or others may read (Art. 36). Each case runs the real waygated binary with a copy
of the dev stack's configuration and checks its exit status and its one-line message."""

import os
import re
import shutil
import subprocess

from conftest import BUILD


def start(path):
    """Runs waygated -c path --check-config; returns (exit status, stderr)."""
    r = subprocess.run([os.path.join(BUILD, "waygated"), "-c", path, "--check-config"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


def variant(stack, name, edit):
    with open(os.path.join(stack.dir, "waygated.conf")) as f:
        conf = f.read()
    path = os.path.join(stack.dir, name)
    with open(path, "w") as f:
        f.write(edit(conf))
    return path


def test_dev_config_accepted(stack):
    rc, err = start(os.path.join(stack.dir, "waygated.conf"))
    assert rc == 0, err


def line_of(path, key):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if re.match(r"\s*%s\s*=" % re.escape(key), line):
                return i
    raise AssertionError("%s not in %s" % (key, path))


def test_bad_value_names_file_line_and_key(stack):
    path = variant(stack, "bad-value.conf", lambda c: re.sub(
        r"(?m)^max_connections\s*=.*$", "max_connections = lots", c))
    rc, err = start(path)
    assert rc == 2
    assert "bad-value.conf:%d:" % line_of(path, "max_connections") in err
    assert "[server] max_connections" in err


def test_unknown_key_refused(stack):
    path = variant(stack, "unknown-key.conf", lambda c: c.replace(
        "[tls]\n", "[tls]\nciphers = NULL\n"))
    rc, err = start(path)
    assert rc == 2
    assert "unknown-key.conf:%d:" % line_of(path, "ciphers") in err
    assert "ciphers" in err


def test_password_in_conninfo_refused(stack):
    path = variant(stack, "password.conf", lambda c: re.sub(
        r"(?m)^conninfo\s*=\s*(.*)$", r"conninfo = \1&password=hunter2hunter2", c))
    rc, err = start(path)
    assert rc == 2
    assert "[database] conninfo" in err
    assert "hunter2hunter2" not in err


def test_plaintext_listener_needs_loopback_and_opt_in(stack):
    path = variant(stack, "insecure.conf", lambda c: c.replace(
        "[server]\n", "[server]\ninsecure_listen = 127.0.0.1:1\n"))
    rc, err = start(path)
    assert rc == 2 and "insecure_l" in err
    path = variant(stack, "insecure-wide.conf", lambda c: c.replace(
        "[server]\n", "[server]\ninsecure_loopback_only = true\ninsecure_listen = 0.0.0.0:1\n"))
    rc, err = start(path)
    assert rc == 2 and "insecure_listen" in err


def keyring_copy(stack, mode):
    path = os.path.join(stack.dir, "keyring-%o" % mode)
    shutil.copyfile(os.path.join(stack.dir, "keyring"), path)
    os.chmod(path, mode)
    conf = variant(stack, "keyring-%o.conf" % mode, lambda c: re.sub(
        r"(?m)^keyring\s*=.*$", "keyring = %s" % path, c))
    return path, conf


def test_keyring_readable_by_group_or_others_refused(stack):
    for mode in (0o640, 0o604, 0o660):
        path, conf = keyring_copy(stack, mode)
        rc, err = start(conf)
        assert rc != 0, "waygated accepted a keyring of mode %o" % mode
        assert path in err and ("%o" % mode) in err, err


def test_keyring_0600_accepted_and_missing_refused(stack):
    path, conf = keyring_copy(stack, 0o600)
    rc, err = start(conf)
    assert rc == 0, err
    os.unlink(path)
    rc, err = start(conf)
    assert rc != 0
    assert "keyring" in err
