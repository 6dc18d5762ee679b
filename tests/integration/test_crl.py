"""Revocation without a restart (issue 10, finding 5): the CRL is read again on SIGHUP and on a
timer ([tls] crl_reload_ms); a live connection of a certificate the new CRL revokes is closed at
once and new handshakes are refused; a CRL that does not load leaves the one in force; a CRL
whose nextUpdate is near is logged and recorded as an incident. Each test runs its own gateway with
its own copy of the CRL, so the session's gateway is not disturbed."""
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess

import grpc

from conftest import ExtraGateway, wait_for
from test_accounts import fingerprint, issue_cert, unique
import waygate_proto


class CrlGateway(ExtraGateway):
    """A second waygated with its own CRL file and [tls] reload settings."""

    def __init__(self, stack, name, reload_ms=0, warn_s=172800, crl_src=None, client_ca=None):
        self.crl = os.path.join(stack.dir, name + ".crl.pem")
        shutil.copy(crl_src or os.path.join(stack.dir, "certs", "crl.pem"), self.crl)

        def edit(text):
            if client_ca:
                text = re.sub(r"(?m)^client_ca\s*=.*$", "client_ca = %s" % client_ca, text)
            return re.sub(r"(?m)^crl\s*=.*$", "crl = %s\ncrl_reload_ms = %d\ncrl_warn_s = %d"
                          % (self.crl, reload_ms, warn_s), text)
        super().__init__(stack, name, edit)


def ca(stack, *args):
    cadir = os.path.join(stack.dir, "certs", "ca")
    r = subprocess.run(["openssl", "ca", "-config", os.path.join(cadir, "openssl.cnf"), "-batch"]
                       + list(args), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def courier(stack):
    """A fresh registered courier certificate of branch a: (crt, key)."""
    name = unique("crl")
    crt, key = issue_cert(stack, name, "/O=Waygate Dev/OU=courier/L=a/CN=%s" % name)
    stack.psql("INSERT INTO principal (name, fingerprint, role, branch, created_by) VALUES "
               "('%s', '\\x%s', 'courier', 'a', 'test')" % (name, fingerprint(crt)))
    return crt, key


def health(ch):
    try:
        return waygate_proto.health_check(ch, timeout=30)
    except grpc.RpcError as e:
        return e.code().name


def refused_at_tls(gw, crt, key):
    ch = waygate_proto.channel(gw.addr, gw.stack.ca, crt, key)
    try:
        return health(ch) == "UNAVAILABLE"
    finally:
        ch.close()


def revoke(stack, crt, out, hours=None):
    ca(stack, "-revoke", crt, "-crl_reason", "keyCompromise")
    ca(stack, "-gencrl", *(["-crlhours", str(hours)] if hours else ["-crldays", "30"]),
       "-out", out)


def test_sighup_revokes_live_connections(stack):
    crt, key = courier(stack)
    gw = CrlGateway(stack, unique("crl-hup"))
    ch = waygate_proto.channel(gw.addr, stack.ca, crt, key)
    try:
        assert wait_for(lambda: health(ch) == "SERVING", 15)
        revoke(stack, crt, gw.crl)
        assert health(ch) == "SERVING"  # not yet: the gateway has not read the new CRL
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "its client certificate is now revoked" in gw.log(), 30), \
            "the live connection of the revoked certificate was not closed"
        assert health(ch) == "UNAVAILABLE"  # the channel's new handshake is refused
        assert refused_at_tls(gw, crt, key)
        # another certificate's connections are untouched
        assert stack.health("courier_a", addr=gw.addr) == "SERVING"
    finally:
        ch.close()
        gw.close()


def test_timer_reloads_without_a_signal(stack):
    crt, key = courier(stack)
    gw = CrlGateway(stack, unique("crl-timer"), reload_ms=500)
    try:
        assert wait_for(lambda: not refused_at_tls(gw, crt, key), 15)
        revoke(stack, crt, gw.crl)
        assert wait_for(lambda: refused_at_tls(gw, crt, key), 30), \
            "the revoked certificate is still served 30 s after the CRL changed"
    finally:
        gw.close()


def test_bad_crl_on_sighup_keeps_everything_in_force(stack):
    crt, key = courier(stack)
    gw = CrlGateway(stack, unique("crl-bad"))
    try:
        with open(gw.crl, "w") as f:
            f.write("-----BEGIN X509 CRL-----\nnot a CRL\n-----END X509 CRL-----\n")
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "nothing reloaded, the running configuration stays" in gw.log(), 30)
        assert gw.proc.poll() is None
        # all or nothing: the policy, which loaded, was not swapped in either, and the record says so
        assert "policy not reloaded, the running one stays: another part of the reload was " \
            "refused" in gw.log()
        chain = gw.chain
        rows = wait_for(lambda: stack.psql(
            "SELECT outcome, detail FROM audit_record WHERE chain = '%s' AND "
            "action = 'config.reload'" % chain), 30)
        assert len(rows) == 1 and rows[0].startswith("failed|nothing reloaded: keyring: ") and \
            rows[0].endswith("; tls: refused"), rows
        assert not refused_at_tls(gw, crt, key)  # still verified against the old CRL
        ch = waygate_proto.channel(gw.addr, stack.ca, *stack.cert("revoked"))
        try:
            assert health(ch) == "UNAVAILABLE"  # and the old CRL still refuses `revoked`
        finally:
            ch.close()
    finally:
        gw.close()


def test_sighup_reads_a_crl_added_to_the_config(stack):
    """A gateway started without [tls] crl; the operator adds one (revoking the dev stack's
    `revoked` certificate) and reloads: the reload reads the TLS files the new config names, its
    record says so, and the revoked certificate's handshake is refused from then on. Red before:
    the SIGHUP read the TLS files of the config the gateway started with (no CRL), and its record
    said 'tls: certificates and CRL' all the same."""
    found = {}

    def edit(text):
        found["crl"] = re.search(r"(?m)^crl\s*=\s*(.*)$", text).group(1).strip()
        return re.sub(r"(?m)^crl\s*=.*\n", "", text, count=1)
    gw = ExtraGateway(stack, unique("crl-add"), edit)
    crt, key = stack.cert("revoked")
    try:
        assert not refused_at_tls(gw, crt, key)  # no CRL: its handshake completes
        with open(gw.conf) as f:
            text = f.read()
        assert "crl =" not in text.split("[database]")[0]
        with open(gw.conf, "w") as f:
            f.write(re.sub(r"(?m)^\[tls\]$", "[tls]\ncrl = %s" % found["crl"], text, count=1))
        gw.proc.send_signal(signal.SIGHUP)
        rows = wait_for(lambda: stack.psql(
            "SELECT outcome, detail FROM audit_record WHERE chain = '%s' AND "
            "action = 'config.reload'" % gw.chain), 30)
        assert len(rows) == 1 and rows[0].startswith("ok|reloaded: keyring: ") and \
            "; tls: certificates and CRL" in rows[0], rows
        assert refused_at_tls(gw, crt, key), "the CRL added to the config was not read"
        assert stack.health("courier_a", addr=gw.addr) == "SERVING"
    finally:
        gw.close()


def test_crl_near_its_next_update_is_an_incident(stack):
    crt, _ = courier(stack)
    near = os.path.join(stack.dir, unique("crl-near") + ".pem")
    revoke(stack, crt, near, hours=1)
    q = "SELECT count(*) FROM incident WHERE kind = 'crl_expiring' AND severity = 'high'"
    before = int(stack.psql(q)[0])
    gw = CrlGateway(stack, unique("crl-near"), reload_ms=600000, warn_s=86400, crl_src=near)
    try:
        assert wait_for(lambda: int(stack.psql(q)[0]) > before, 30), \
            "no crl_expiring incident for a CRL whose nextUpdate is an hour away"
        assert "the CRL's nextUpdate is in" in gw.log()
    finally:
        gw.close()


def test_forward_crl_near_its_next_update_is_an_incident(stack):
    """[forward] crl is read again on the same timer; a nextUpdate within [tls] crl_warn_s is
    logged and recorded as the listener's is, under its own kind (past it, OpenSSL refuses the
    backend and deliveries wait in the outbox)."""
    near = os.path.join(stack.dir, unique("fwd-crl-near") + ".pem")
    ca(stack, "-gencrl", "-crlhours", "1", "-out", near)
    q = "SELECT count(*) FROM incident WHERE kind = 'forward_crl_expiring' AND severity = 'high'"
    before = int(stack.psql(q)[0])

    def edit(text):
        text = re.sub(r"(?m)^crl_warn_s\s*=.*$", "", text)
        text = re.sub(r"(?m)^(crl\s*=.*)$", r"\1\ncrl_reload_ms = 600000\ncrl_warn_s = 86400",
                      text, count=1)
        text = re.sub(r"(?m)^\[metrics\]$", "[metrics]\nlisten = 127.0.0.1:%d" % metrics_port,
                      text)
        return re.sub(r"(?m)^\[forward\]$", "[forward]\ncrl = %s" % near, text)
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        metrics_port = sk.getsockname()[1]
    gw = ExtraGateway(stack, unique("fwd-crl-near"), edit)
    try:
        assert wait_for(lambda: int(stack.psql(q)[0]) > before, 30), \
            "no forward_crl_expiring incident for a [forward] CRL whose nextUpdate is an hour away"
        assert "the [forward] CRL's nextUpdate is in" in gw.log()
        # the listener's CRL (30 days) is not near: no line about it
        assert "the CRL's nextUpdate" not in gw.log()
        c = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=30)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        left = re.search(r"(?m)^waygate_forward_crl_next_update_seconds (\S+)$", text)
        assert left and 0 < float(left.group(1)) <= 3600, text[-2000:]
        cert = re.search(r"(?m)^waygate_forward_cert_expiry_seconds (\S+)$", text)
        assert cert and float(cert.group(1)) > 86400
    finally:
        gw.close()


def private_pki(stack, name):
    """A root CA, an issuing CA under it and a courier certificate of branch a issued by the
    latter (registered as a principal), in PEM files under the stack's directory; and CRLs of
    both CAs, empty or revoking the issuing CA. Returns a dict of paths and PEM bytes."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def dn(*parts):
        return x509.Name([x509.NameAttribute(oid, v) for oid, v in parts])

    def cert(subject, key, issuer, issuer_key, ca, pathlen=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                              False, False), critical=True)
        else:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                              False, False), critical=True)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def crl(issuer, issuer_key, revoked=()):
        b = (x509.CertificateRevocationListBuilder().issuer_name(issuer)
             .last_update(now - datetime.timedelta(minutes=5))
             .next_update(now + datetime.timedelta(days=30)))
        for serial in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(now).build())
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    pem = serialization.Encoding.PEM
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root_dn = dn((NameOID.ORGANIZATION_NAME, "Waygate Test"), (NameOID.COMMON_NAME, name + " root"))
    mid_dn = dn((NameOID.ORGANIZATION_NAME, "Waygate Test"), (NameOID.COMMON_NAME, name + " mid"))
    leaf_dn = dn((NameOID.ORGANIZATION_NAME, "Waygate Dev"),
                 (NameOID.ORGANIZATIONAL_UNIT_NAME, "courier"), (NameOID.LOCALITY_NAME, "a"),
                 (NameOID.COMMON_NAME, name))
    root = cert(root_dn, root_key, root_dn, root_key, True, 1)
    mid = cert(mid_dn, mid_key, root_dn, root_key, True, 0)
    leaf = cert(leaf_dn, leaf_key, mid_dn, mid_key, False)
    out = {"root": root.public_bytes(pem),
           "chain": leaf.public_bytes(pem) + mid.public_bytes(pem),
           "key": leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()),
           "crls": crl(root_dn, root_key) + crl(mid_dn, mid_key),
           "crls_mid_revoked": crl(root_dn, root_key, [mid.serial_number]) + crl(mid_dn, mid_key)}
    der = leaf.public_bytes(serialization.Encoding.DER)
    stack.psql("INSERT INTO principal (name, fingerprint, role, branch, created_by) VALUES "
               "('%s', '\\x%s', 'courier', 'a', 'test')" % (name, hashlib.sha256(der).hexdigest()))
    return out


def test_sighup_drops_connections_under_a_revoked_intermediate(stack):
    """A CRL read again that revokes an issuing (intermediate) CA closes the live connections of
    the certificates it issued, as it does for a revoked certificate itself; new handshakes were
    already refused (every certificate of the chain is checked against its issuer's CRL)."""
    name = unique("crl-mid")
    pki = private_pki(stack, name)
    with open(os.path.join(stack.dir, "certs", "ca.crt"), "rb") as f:
        dev_ca = f.read()
    with open(os.path.join(stack.dir, "certs", "crl.pem"), "rb") as f:
        dev_crl = f.read()
    cas, crls = (os.path.join(stack.dir, "%s-%s.pem" % (name, k)) for k in ("cas", "crls"))
    with open(cas, "wb") as f:
        f.write(dev_ca + pki["root"])  # the dev principals' CA and the private root
    with open(crls, "wb") as f:
        f.write(dev_crl + pki["crls"])
    gw = CrlGateway(stack, name, crl_src=crls, client_ca=cas)
    with open(stack.ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read(), private_key=pki["key"],
                                             certificate_chain=pki["chain"])
    ch = grpc.secure_channel(gw.addr, creds,
                             options=[("grpc.ssl_target_name_override", "localhost")])
    try:
        assert wait_for(lambda: health(ch) == "SERVING", 15)
        with open(gw.crl, "wb") as f:
            f.write(dev_crl + pki["crls_mid_revoked"])
        assert health(ch) == "SERVING"  # not yet: the gateway has not read the new CRL
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "its client certificate is now revoked" in gw.log(), 30), \
            "the live connection under the revoked intermediate was not closed"
        assert health(ch) == "UNAVAILABLE"  # the channel's new handshake is refused
        assert stack.health("courier_a", addr=gw.addr) == "SERVING"
    finally:
        ch.close()
        gw.close()
