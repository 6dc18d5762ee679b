"""One certificate cannot hold every connection the gateway takes (threat model: "one
certificate holds every connection slot"): at most [server] max_connections_per_certificate
authenticated connections of one client certificate at once. One more completes its handshake
and then answers every call RESOURCE_EXHAUSTED naming the limit, holds a pre-authentication slot
(so that the per-address and global pre-authentication caps bound those too), and is closed
after preauth_timeout_ms; other certificates are not affected, and a connection closed lets one
more in.

The state decides, not the timing: the held connections are counted once the gateway has
answered a PING on each (its handshake is then done), and each wait below is a bound on
something that happens, never a measured duration."""

import re
import socket
import ssl

import grpc

from conftest import ExtraGateway, free_port, wait_for
from test_attack_edge import ACK, PING, frame, frames, h2_connect, scrape_metrics
import waygate_proto

LIMIT = 3
REFUSED = (grpc.StatusCode.RESOURCE_EXHAUSTED,
           "this certificate already holds %d other connections to the gateway ([server] "
           "max_connections_per_certificate): this connection answers no call and is closed; "
           "use one of the others" % LIMIT)


class _Addr:
    """What h2_connect and scrape_metrics read of a stack, for the extra gateway."""

    def __init__(self, stack, addr, metrics):
        self.addr, self.ca, self.cert = addr, stack.ca, stack.cert
        self.env = {"WAYGATE_METRICS_ADDR": metrics}


def held(target, principal="courier_a"):
    """A raw mTLS connection whose handshake the gateway has finished (it answered a PING)."""
    s = h2_connect(target, principal)
    s.sendall(frame(PING, 0, 0, b"heldheld"))
    for ftype, flags, _, payload in frames(s):
        if ftype == PING and flags & ACK and payload == b"heldheld":
            return s
    raise AssertionError("the gateway closed a connection it should have taken")


def health(stack, principal, addr):
    """Health/Check over a new connection of its own: "SERVING", or (code, details)."""
    cert, key = stack.cert(principal)
    ch = waygate_proto.channel(addr, stack.ca, cert, key, [("grpc.use_local_subchannel_pool", 1)])
    try:
        return waygate_proto.health_check(ch, timeout=30)
    except grpc.RpcError as e:
        return (e.code(), e.details())
    finally:
        ch.close()


def test_one_certificate_cannot_hold_every_connection(stack):
    mport = free_port()
    gw = ExtraGateway(stack, "certconn", lambda t: re.sub(
        r"(?m)^\[server\]$", "[server]\nmax_connections_per_certificate = %d" % LIMIT, t) +
        "\n[metrics]\nlisten = 127.0.0.1:%d\n" % mport)
    target = _Addr(stack, gw.addr, "127.0.0.1:%d" % mport)
    conns = []
    try:
        conns = [held(target) for _ in range(LIMIT)]
        # one more of courier_a: refused, with the rule and the limit named
        assert health(stack, "courier_a", gw.addr) == REFUSED
        # another certificate is not affected
        assert health(stack, "courier_b", gw.addr) == "SERVING"
        metrics = scrape_metrics(target)
        assert float(metrics['waygate_connections_refused_total'
                             '{limit="max_connections_per_certificate"}']) >= 1

        # the refused connection is closed by the gateway (after preauth_timeout_ms, 3 s), not
        # kept until the idle timeout (300 s); the wait is only a bound on a broken gateway
        extra = h2_connect(target)
        extra.settimeout(120)
        extra.sendall(frame(PING, 0, 0, b"refused!"))
        ended = "open"
        try:
            while True:
                data = extra.recv(65536)
                if not data:
                    ended = "closed"
                    break
        except socket.timeout:
            ended = "still open after 120 s"
        except (ConnectionError, ssl.SSLError, OSError):
            ended = "closed"
        finally:
            extra.close()
        assert ended == "closed", "the refused connection was %s" % ended

        # a connection closed lets one more in
        conns.pop().close()
        assert wait_for(lambda: health(stack, "courier_a", gw.addr) == "SERVING", 60)
    finally:
        for s in conns:
            s.close()
        gw.close()
    assert not any('"level":"error"' in line for line in gw.log().splitlines())
