"""waygate_proto: Waygate's protobuf messages and a small gRPC client helper for Python.

Generates the Python modules of every proto/**/*.proto at run time with `protoc --python_out`
(Debian has no grpcio-tools) into a cache directory keyed by the content of the .proto files,
and imports them. Calls go through channel.unary_unary / unary_stream with the generated
classes' SerializeToString / FromString, so no generated gRPC stubs are needed.

Used by deploy/waygate-client and by tests/integration. Needs python3-grpcio, python3-protobuf
and protobuf-compiler (Debian 12 packages, under /usr/bin/python3).
"""

import glob
import hashlib
import importlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO_DIR = os.path.join(ROOT, "proto")

# Principals whose certificates the dev stack writes to DIR/env (docs/roles.md).
PRINCIPALS = ("courier_a", "courier_b", "branch_a", "branch_b", "backend", "admin", "cs_a", "auditor",
              "sysadmin", "lawful")

_loaded = None


def _cache_root():
    if os.environ.get("WAYGATE_PB_CACHE"):
        return os.environ["WAYGATE_PB_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "waygate", "pb")


def _generate(proto_dir):
    files = sorted(os.path.relpath(p, proto_dir)
                   for p in glob.glob(os.path.join(proto_dir, "**", "*.proto"), recursive=True))
    if not files:
        raise RuntimeError("no .proto files under %s" % proto_dir)
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(proto_dir, rel), "rb") as f:
            h.update(f.read() + b"\0")
    root = _cache_root()
    out = os.path.join(root, h.hexdigest()[:20])
    if os.path.exists(os.path.join(out, ".complete")):
        return out
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gen-", dir=root)
    try:
        r = subprocess.run(["protoc", "--proto_path=" + proto_dir, "--python_out=" + tmp] + files,
                           cwd=proto_dir, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("protoc failed: " + r.stderr.strip())
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.rename(tmp, out)
        except OSError:
            if not os.path.exists(os.path.join(out, ".complete")):
                raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _import_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load(proto_dir=PROTO_DIR):
    """Returns a namespace with the generated modules: common, intake, query, compliance,
    admin, backend (package waygate.v1) and health (grpc.health.v1)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    out = _generate(proto_dir)
    if out not in sys.path:
        sys.path.insert(0, out)
    ns = types.SimpleNamespace()
    for name in ("common", "intake", "query", "compliance", "admin", "backend"):
        setattr(ns, name, importlib.import_module("waygate.v1.%s_pb2" % name))
    # "grpc" is grpcio's own package, so grpc/health/v1/health_pb2.py cannot be imported by its
    # package path; load it from its file under a private module name (it imports nothing).
    ns.health = _import_file("_waygate_grpc_health_v1_health_pb2",
                             os.path.join(out, "grpc", "health", "v1", "health_pb2.py"))
    _loaded = ns
    return ns


def read_env(path):
    """Parses a shell-sourceable KEY=VALUE file (as deploy/devstack writes DIR/env)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):]
            key, sep, value = line.partition("=")
            if not sep:
                continue
            parts = shlex.split(value)
            env[key.strip()] = parts[0] if parts else ""
    return env


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def credentials(ca, cert=None, key=None):
    """TLS channel credentials trusting `ca`, presenting `cert`/`key` when given."""
    import grpc
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(ca),
        private_key=read_file(key) if key else None,
        certificate_chain=read_file(cert) if cert else None)


def channel(addr, ca, cert=None, key=None, options=()):
    """A secure channel to addr (host:port). The dev server certificate names localhost and
    127.0.0.1; the target name is checked against "localhost"."""
    import grpc
    opts = [("grpc.ssl_target_name_override", "localhost"),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    opts.extend(options)
    return grpc.secure_channel(addr, credentials(ca, cert, key), options=opts)


def _ident(b):
    return b


def unary(ch, method, request, response_cls, timeout=10, metadata=None):
    """Calls a unary method (full path "/pkg.Service/Method"). `request` may be a message or
    raw bytes (to send hand-crafted encodings); `response_cls` None returns raw bytes."""
    ser = _ident if isinstance(request, (bytes, bytearray)) else (lambda m: m.SerializeToString())
    de = response_cls.FromString if response_cls is not None else _ident
    fn = ch.unary_unary(method, request_serializer=ser, response_deserializer=de)
    return fn(request, timeout=timeout, metadata=metadata)


def stream(ch, method, request, response_cls, timeout=30, metadata=None):
    """Calls a server-streaming method; returns an iterator of responses."""
    ser = _ident if isinstance(request, (bytes, bytearray)) else (lambda m: m.SerializeToString())
    de = response_cls.FromString if response_cls is not None else _ident
    fn = ch.unary_stream(method, request_serializer=ser, response_deserializer=de)
    return fn(request, timeout=timeout, metadata=metadata)


def health_check(ch, timeout=5, service=""):
    """grpc.health.v1.Health/Check; returns the status name ("SERVING", "NOT_SERVING", ...)."""
    pb = load()
    resp = unary(ch, "/grpc.health.v1.Health/Check",
                 pb.health.HealthCheckRequest(service=service), pb.health.HealthCheckResponse,
                 timeout=timeout)
    return pb.health.HealthCheckResponse.ServingStatus.Name(resp.status)
