"""The daemon refuses to start on a bad configuration or an unsafe keyring, and says why: the
file, the line and the key for a bad value (issue 2), the path and the mode for a keyring that
group or others may read (Art. 36). Each case runs the real waygated binary with a copy
of the dev stack's configuration and checks its exit status and its one-line message."""

import os
import re
import shutil
import subprocess

from conftest import BUILD, ROOT


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


def refused_with_file(stack, section, key, name, content, conf_name):
    """--check-config with [section] key pointing at a new file `name` holding `content`: must
    exit 2; returns (that file's path, stderr)."""
    bad = os.path.join(stack.dir, name)
    with open(bad, "w") as f:
        f.write(content)
    rc, err = start(variant(stack, conf_name, set_key(section, key, bad)))
    assert rc == 2, err
    return bad, err


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


def test_published_test_keyring_refused(stack):
    """The known-answer tests' keyring is in the repository for anyone to read: the daemon and
    waygatectl refuse it, naming the file and the key, instead of sealing under it."""
    path = os.path.join(stack.dir, "cc-published-keyring")
    shutil.copyfile(os.path.join(ROOT, "tests", "unit", "data", "golden", "keyring"), path)
    os.chmod(path, 0o600)
    conf = variant(stack, "cc-published.conf", set_key("keys", "keyring", path))
    rc, err = start(conf)
    assert rc == 2, err
    assert path in err and "its kek key version 1 is a test key published" in err, err
    r = stack.ctl("keys", "status", "--keyring", path)
    assert r.returncode != 0
    assert path in r.stderr and "published" in r.stderr, r.stderr


def test_keyring_0600_accepted_and_missing_refused(stack):
    path, conf = keyring_copy(stack, 0o600)
    rc, err = start(conf)
    assert rc == 0, err
    os.unlink(path)
    rc, err = start(conf)
    assert rc != 0
    assert "keyring" in err


# --- --check-config loads every file a start would load (issue 10), binding and connecting to
# nothing: each broken piece fails with the configuration's path, the file and the problem ---

def set_key(section, key, value):
    """An edit setting `key = value` in [section] (replacing the key's line there, else adding
    it under the section's header; the section is added when absent)."""
    def edit(conf):
        out, inside, done = [], False, False
        for line in conf.splitlines():
            st = line.strip()
            if st.startswith("["):
                if inside and not done:
                    out.append("%s = %s" % (key, value))
                    done = True
                inside = st == "[%s]" % section
            elif inside and re.match(r"%s\s*=" % re.escape(key), st):
                line, done = "%s = %s" % (key, value), True
            out.append(line)
        if inside and not done:
            out.append("%s = %s" % (key, value))
        elif not done:
            out += ["", "[%s]" % section, "%s = %s" % (key, value)]
        return "\n".join(out) + "\n"
    return edit


def certs(stack, name):
    return os.path.join(stack.dir, "certs", name)


def test_check_config_server_certificate_missing(stack):
    missing = certs(stack, "no-such-server.crt")
    path = variant(stack, "cc-cert-missing.conf", set_key("tls", "cert", missing))
    rc, err = start(path)
    assert rc == 2, err
    assert "cc-cert-missing.conf:%d: [tls] cert" % line_of(path, "cert") in err, err
    # a file that is there but holds no certificate: refused when loaded, naming it
    garbage, err = refused_with_file(stack, "tls", "cert", "cc-not-a-cert.crt",
                                     "not a certificate\n", "cc-cert-garbage.conf")
    assert "cc-cert-garbage.conf" in err and garbage in err and "[tls]" in err, err
    assert "certificate" in err, err


def test_check_config_key_not_matching_certificate(stack):
    other_key = certs(stack, "courier_a.key")
    path = variant(stack, "cc-key-mismatch.conf", set_key("tls", "key", other_key))
    rc, err = start(path)
    assert rc == 2, err
    assert other_key in err and "[tls]" in err, err
    assert "mismatch" in err or "does not match" in err, err


def test_check_config_client_ca_and_crl_loaded(stack):
    bad, err = refused_with_file(
        stack, "tls", "crl", "cc-not-a-crl.pem",
        "-----BEGIN X509 CRL-----\nnot base64 at all\n-----END X509 CRL-----\n", "cc-bad-crl.conf")
    assert bad in err and "CRL" in err, err


def test_check_config_forward_crl_past_its_next_update(stack):
    """A [forward] crl whose nextUpdate is past would refuse the backend's certificate at every
    handshake (deliveries would only wait): refused like the listener's, naming the file."""
    import time
    cadir = os.path.join(stack.dir, "certs", "ca")
    stale = os.path.join(stack.dir, "cc-forward-stale-crl.pem")
    r = subprocess.run(["openssl", "ca", "-config", os.path.join(cadir, "openssl.cnf"), "-batch",
                        "-gencrl", "-crlsec", "1", "-out", stale], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    time.sleep(2.5)  # nextUpdate is one second after its issue: now past, whatever the load
    path = variant(stack, "cc-forward-stale-crl.conf", set_key("forward", "crl", stale))
    rc, err = start(path)
    assert rc == 2, err
    assert ("cc-forward-stale-crl.conf: [forward] crl %s: nextUpdate is past (expired): the "
            "backend's certificate" % stale) in err, err
    # the same file as the listener's CRL: refused for every client certificate
    path = variant(stack, "cc-tls-stale-crl.conf", set_key("tls", "crl", stale))
    rc, err = start(path)
    assert rc == 2, err
    assert "[tls] crl %s: nextUpdate is past (expired): every client certificate" % stale in err


def expired_pair(stack):
    """A self-signed certificate whose notAfter is past, with its key (cryptography)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    crt, k = os.path.join(stack.dir, "cc-expired.crt"), os.path.join(stack.dir, "cc-expired.key")
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(k, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(k, 0o600)
    return crt, k


def test_check_config_expired_certificate(stack):
    crt, key = expired_pair(stack)
    path = variant(stack, "cc-expired.conf",
                   lambda c: set_key("tls", "key", key)(set_key("tls", "cert", crt)(c)))
    rc, err = start(path)
    assert rc == 2, err
    assert crt in err and "expired" in err and "[tls] cert" in err, err


def test_check_config_forward_certificates(stack):
    # the forwarder's client key not matching its certificate
    path = variant(stack, "cc-fwd-mismatch.conf",
                   set_key("forward", "key", certs(stack, "courier_a.key")))
    rc, err = start(path)
    assert rc == 2, err
    assert "[forward]" in err and certs(stack, "courier_a.key") in err, err
    assert "mismatch" in err or "does not match" in err, err
    # its CA bundle holding no certificate
    bad, err = refused_with_file(stack, "forward", "ca", "cc-not-a-ca.crt", "not a CA bundle\n",
                                 "cc-fwd-ca.conf")
    assert "[forward]" in err and bad in err and "CA" in err, err


def test_check_config_keyring_missing_the_suite(stack):
    with open(os.path.join(stack.dir, "waygated.conf")) as f:
        m = re.search(r"(?m)^suite\s*=\s*(\w+)", f.read())
    other = "sm" if m is not None and m.group(1) == "aes" else "aes"
    keyring = os.path.join(stack.dir, "cc-keyring-one-suite")
    if os.path.exists(keyring):
        os.unlink(keyring)
    r = stack.ctl("keys", "init", "--suite", "sm" if other == "aes" else "aes",
                  "--keyring", keyring)
    assert r.returncode == 0, r.stderr
    path = variant(stack, "cc-suite.conf", lambda c: set_key("crypto", "suite", other)(
        set_key("keys", "keyring", keyring)(c)))
    rc, err = start(path)
    assert rc == 2, err
    assert keyring in err and "[crypto] suite = %s" % other in err, err


def test_check_config_bad_policy_line(stack):
    policy = os.path.join(stack.dir, "cc-policy.conf")
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "deploy", "policy.conf")) as f:
        text = f.read()
    lines = text.splitlines()
    at = next(i for i, l in enumerate(lines) if l.strip().startswith("[view."))
    lines.insert(at + 1, "sender.shoe_size = clear")
    with open(policy, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(policy, 0o600)
    path = variant(stack, "cc-policy-bad.conf", set_key("policy", "file", policy))
    rc, err = start(path)
    assert rc == 2, err
    assert "%s:%d" % (policy, at + 2) in err and "shoe_size" in err, err


def test_check_config_metrics_tls_needs_listen(stack):
    path = variant(stack, "cc-metrics.conf", lambda c: re.sub(
        r"(?m)^\[metrics\]\n", "[metrics]\ntls = true\n", re.sub(
            r"(?m)^(\[metrics\]\n)listen\s*=.*\n", r"\1", c)))
    rc, err = start(path)
    assert rc == 2 and "[metrics] tls" in err, err
    # over mTLS, a non-loopback address is allowed; plain, it is not
    wide = variant(stack, "cc-metrics-wide.conf", set_key("metrics", "listen", "0.0.0.0:1"))
    rc, err = start(wide)
    assert rc == 2 and "[metrics] listen" in err, err
    wide_tls = variant(stack, "cc-metrics-wide-tls.conf", lambda c: set_key(
        "metrics", "tls", "true")(set_key("metrics", "listen", "0.0.0.0:1")(c)))
    rc, err = start(wide_tls)
    assert rc == 0, err


def test_check_config_log_file_unwritable(stack):
    """[log] file in a directory that does not exist, or naming a directory: refused by
    --check-config with the file and the reason, instead of a start that fails later."""
    missing = os.path.join(stack.dir, "no-such-dir", "waygated.log")
    rc, err = start(variant(stack, "log-missing.conf", set_key("log", "file", missing)))
    assert rc == 2, err
    assert "[log] file %s" % missing in err and "does not exist" in err
    rc, err = start(variant(stack, "log-dir.conf", set_key("log", "file", stack.dir)))
    assert rc == 2, err
    assert "[log] file %s: not a regular file" % stack.dir in err
    ok = os.path.join(stack.dir, "check-config-new.log")
    rc, err = start(variant(stack, "log-ok.conf", set_key("log", "file", ok)))
    assert rc == 0, err
    assert not os.path.exists(ok)  # checked, not created
