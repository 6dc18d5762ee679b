"""grpc.health.v1.Health/Watch as load balancers use it: the status at once, each change as it
happens (the database going away and coming back), SERVICE_UNKNOWN for a service this gateway does
not serve (the stream stays open), and NOT_SERVING followed by the end of the stream when the
gateway drains."""
import os
import queue
import signal
import threading

import grpc

import waygate_proto
from test_query import second_gateway_of

WAIT = 60  # seconds for a change to arrive: generous, the poll interval is 250 ms


class Watcher:
    """Reads a Watch stream on a thread into a queue of status names (then "END:<code>")."""

    def __init__(self, ch, service=""):
        pb = waygate_proto.load()
        self.pb = pb
        self.q = queue.Queue()
        call = ch.unary_stream("/grpc.health.v1.Health/Watch",
                               request_serializer=pb.health.HealthCheckRequest.SerializeToString,
                               response_deserializer=pb.health.HealthCheckResponse.FromString)
        self.stream = call(pb.health.HealthCheckRequest(service=service), timeout=600)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        names = self.pb.health.HealthCheckResponse.ServingStatus
        try:
            for msg in self.stream:
                self.q.put(names.Name(msg.status))
            self.q.put("END:OK")
        except grpc.RpcError as e:
            self.q.put("END:%s" % e.code().name)

    def next(self, timeout=WAIT):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self):
        self.stream.cancel()
        self.t.join(10)


def test_watch_follows_the_database(stack):
    w = Watcher(stack.channel("courier_a"))
    try:
        assert w.next() == "SERVING"
        stack.devstack("pg-stop")
        try:
            assert w.next() == "NOT_SERVING", "no NOT_SERVING after PostgreSQL stopped"
        finally:
            stack.devstack("pg-start")
        assert w.next() == "SERVING", "no SERVING after PostgreSQL came back"
        assert w.q.empty(), "a status sent twice: %r" % w.q.get()
    finally:
        w.cancel()


def test_watch_unknown_service_stays_open(stack):
    w = Watcher(stack.channel("branch_a"), service="no.such.Service")
    try:
        assert w.next() == "SERVICE_UNKNOWN"
        # the stream is still open: the known service on the same connection answers meanwhile
        assert stack.health("branch_a") == "SERVING"
        assert w.next(timeout=1) is None, "the stream ended or sent again"
    finally:
        w.cancel()


def pid_of(conf_fragment):
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    if conf_fragment.encode() in f.read():
                        return int(p)
            except OSError:
                pass
    return None


def test_watch_says_not_serving_and_ends_when_the_gateway_drains(stack):
    with second_gateway_of(stack) as addr:
        port = addr.rsplit(":", 1)[1]
        pid = pid_of("waygated-second-%s.conf" % port)
        assert pid is not None
        w = Watcher(stack.channel("courier_a", addr=addr))
        try:
            assert w.next() == "SERVING"
            os.kill(pid, signal.SIGTERM)
            assert w.next() == "NOT_SERVING"
            assert w.next() == "END:OK", "the stream did not end after NOT_SERVING"
        finally:
            w.cancel()
