"""Permissions (docs/roles.md, §7.1; least privilege, Art. 34): every method of the API called with an
empty request by every principal of the dev stack, checking the exact gRPC status.

The matrix below is the intended policy, written here independently of the gateway's method
table: a role not allowed gets PERMISSION_DENIED (whether or not the method is implemented yet);
an allowed role gets UNIMPLEMENTED from a method without a handler, and from an implemented one
the deliberate answer to an empty request. The revoked and the rogue certificates never get
past TLS (UNAVAILABLE), whatever the method.

Every administrative act names a person (Art. 31, 34): the certificates of the people's roles
(`admin`, `auditor`, `sysadmin`, `lawful`) are registered for administration and, without a
token, reach only what any authenticated caller may (health, Login, ChangePassword); their roles
are exercised by the dev stack's accounts (secadmin, auditor, sysadmin, lawful, and the branch
accounts clerk_a and cs_a), each over its certificate with its own token."""

import grpc
import pytest

import waygate_proto

ANYONE = "anyone"  # also without a client certificate (which the TLS layer then refuses)
AUTHENTICATED = "authenticated"  # any verified principal, whatever its role

HEALTH = "/grpc.health.v1.Health/Check"
# Open to anyone like Check, but a stream that stays open until the client ends it: not called
# with an empty request here (test_health.py tests it).
LONG_LIVED = {"/grpc.health.v1.Health/Watch"}

# method -> the roles allowed to call it
ALLOWED = {
    HEALTH: ANYONE,
    "/waygate.v1.WaybillIntake/Submit": {"courier"},
    "/waygate.v1.WaybillIntake/SubmitBatch": {"courier"},
    "/waygate.v1.WaybillIntake/RecordScan": {"courier"},
    # courier: by number, to deliver; clerk: its branch's waybills; customer service: in scope;
    # lawful_access: the waybills of its approved cases only (Art. 16)
    "/waygate.v1.WaybillQuery/Get": {"courier", "branch_clerk", "customer_service",
                                     "lawful_access"},
    "/waygate.v1.WaybillQuery/Search": {"branch_clerk", "customer_service"},
    "/waygate.v1.WaybillQuery/Reveal": {"courier", "branch_clerk", "customer_service"},
    "/waygate.v1.Compliance/RequestBulk": {"security_admin", "compliance_auditor"},
    "/waygate.v1.Compliance/ApproveBulk": {"security_admin", "compliance_auditor"},
    # shows a bulk request to the roles that may request or approve one (Art. 37)
    "/waygate.v1.Compliance/GetBulk": {"security_admin", "compliance_auditor"},
    "/waygate.v1.Compliance/RunBulk": {"security_admin", "compliance_auditor"},
    "/waygate.v1.Compliance/ExportAudit": {"compliance_auditor"},
    "/waygate.v1.Compliance/Report": {"compliance_auditor"},
    "/waygate.v1.Compliance/RequestLawfulAccess": {"lawful_access"},
    "/waygate.v1.Compliance/DecideLawfulAccess": {"security_admin"},
    # shows a case to the roles that may request or decide one (Art. 16)
    "/waygate.v1.Compliance/GetLawfulCase": {"lawful_access", "security_admin"},
    "/waygate.v1.Admin/Login": AUTHENTICATED,
    "/waygate.v1.Admin/ChangePassword": AUTHENTICATED,
    "/waygate.v1.Admin/CreateAccount": {"security_admin"},
    "/waygate.v1.Admin/DisableAccount": {"security_admin"},
    "/waygate.v1.Admin/IssueSegment": {"security_admin"},
    "/waygate.v1.Admin/RotateKey": {"security_admin"},
}

# The methods implemented so far, and their answer (status, words of the message) to an allowed
# caller's empty request; every other method answers UNIMPLEMENTED.
EMPTY_REQUEST_ANSWER = {
    HEALTH: (grpc.StatusCode.OK, None),  # service "" is the server as a whole: SERVING
    "/waygate.v1.WaybillIntake/Submit": (grpc.StatusCode.INVALID_ARGUMENT, "waybill: is required"),
    "/waygate.v1.WaybillIntake/SubmitBatch": (grpc.StatusCode.INVALID_ARGUMENT,
                                              "waybills: at least one waybill is required"),
    "/waygate.v1.WaybillIntake/RecordScan": (grpc.StatusCode.INVALID_ARGUMENT,
                                             "waybill_no: is required"),
    "/waygate.v1.WaybillQuery/Get": (grpc.StatusCode.INVALID_ARGUMENT, "waybill_no: is required"),
    "/waygate.v1.WaybillQuery/Search": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "exactly one of phone, id_number, waybill_no, pickup_day must be set"),
    "/waygate.v1.WaybillQuery/Reveal": (grpc.StatusCode.INVALID_ARGUMENT,
                                        "waybill_no: is required"),
    "/waygate.v1.Admin/Login": (grpc.StatusCode.INVALID_ARGUMENT, "account: is required"),
    # a certificate has no password: only an account's token may change one
    "/waygate.v1.Admin/ChangePassword": (grpc.StatusCode.UNAUTHENTICATED,
                                         "authorization: is required"),
    "/waygate.v1.Admin/CreateAccount": (grpc.StatusCode.INVALID_ARGUMENT,
                                        "account: must be 3 to 64 characters"),
    "/waygate.v1.Admin/DisableAccount": (grpc.StatusCode.INVALID_ARGUMENT, "account: is required"),
    "/waygate.v1.Compliance/RequestBulk": (grpc.StatusCode.INVALID_ARGUMENT,
                                           "operation: must be EXPORT, COPY or DESTROY"),
    "/waygate.v1.Compliance/ApproveBulk": (grpc.StatusCode.INVALID_ARGUMENT,
                                           "request_id: is required"),
    "/waygate.v1.Compliance/GetBulk": (grpc.StatusCode.INVALID_ARGUMENT, "request_id: is required"),
    "/waygate.v1.Compliance/RunBulk": (grpc.StatusCode.INVALID_ARGUMENT, "request_id: is required"),
    "/waygate.v1.Compliance/Report": (grpc.StatusCode.INVALID_ARGUMENT, "month: is required"),
    "/waygate.v1.Compliance/RequestLawfulAccess": (grpc.StatusCode.INVALID_ARGUMENT,
                                                   "agency: is required"),
    "/waygate.v1.Compliance/DecideLawfulAccess": (grpc.StatusCode.INVALID_ARGUMENT,
                                                  "case_id: is required"),
    "/waygate.v1.Compliance/GetLawfulCase": (grpc.StatusCode.INVALID_ARGUMENT,
                                             "case_id: is required"),
    # an empty range asks for everything up to now: a bundle
    "/waygate.v1.Compliance/ExportAudit": (grpc.StatusCode.OK, None),
}

# dev-stack principal -> its role (the OU of its certificate, deploy/gen-certs)
ROLE = {
    "courier_a": "courier",
    "courier_b": "courier",
    "branch_a": "branch_clerk",
    "branch_b": "branch_clerk",
    "backend": "backend",
    "admin": "security_admin",
    "cs_a": "customer_service",
    "auditor": "compliance_auditor",
    "sysadmin": "system_admin",
    "lawful": "lawful_access",
}
REFUSED_AT_TLS = ("revoked", "rogue")

# dev principals registered for administration (deploy/devstack `principals add --admin`)
ADMIN_CHANNEL = {"admin", "auditor", "sysadmin", "lawful"}
ADMIN_CERT_REFUSAL = ("authorization: a certificate registered for administration acts only "
                      "through an account's token: call Admin/Login first (Art. 31)")

# dev-stack account -> its role (deploy/devstack-accounts)
ACCOUNT_ROLE = {
    "secadmin": "security_admin",
    "auditor": "compliance_auditor",
    "sysadmin": "system_admin",
    "lawful": "lawful_access",
    "clerk_a": "branch_clerk",
    "cs_a": "customer_service",
}

# docs/roles.md's roles: each one is held by some principal above, so every role is exercised.
ROLES_OF_DOCS = {"courier", "branch_clerk", "customer_service", "compliance_auditor",
              "security_admin", "system_admin", "lawful_access", "backend"}


def expected(method, principal):
    """(status, words the message must contain) for an empty request to method by principal."""
    if principal in REFUSED_AT_TLS:
        return grpc.StatusCode.UNAVAILABLE, None
    allowed = ALLOWED[method]
    if principal in ADMIN_CHANNEL and allowed not in (ANYONE, AUTHENTICATED):
        return grpc.StatusCode.PERMISSION_DENIED, ADMIN_CERT_REFUSAL
    return expected_of_role(method, ROLE[principal])


def expected_of_role(method, role):
    """(status, words) for an empty request to method by a caller acting with role."""
    allowed = ALLOWED[method]
    if allowed not in (ANYONE, AUTHENTICATED) and role not in allowed:
        return (grpc.StatusCode.PERMISSION_DENIED,
                "role %s: may not call this method (least privilege, Art. 34)" % role)
    return EMPTY_REQUEST_ANSWER.get(
        method, (grpc.StatusCode.UNIMPLEMENTED, "%s: is not implemented" % method))


def api_methods(pb):
    """{path: server_streaming} of every method the protos define, health included."""
    out = {}
    for mod in (pb.health, pb.intake, pb.query, pb.compliance, pb.admin):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                out["/%s/%s" % (svc.full_name, m.name)] = m.server_streaming
    return out


def call(ch, method, streaming, metadata=None):
    """Calls method with an empty request; returns (status, message, responses)."""
    try:
        if streaming:
            got = list(waygate_proto.stream(ch, method, b"", None, timeout=10, metadata=metadata))
        else:
            got = [waygate_proto.unary(ch, method, b"", None, timeout=10, metadata=metadata)]
    except grpc.RpcError as e:
        return e.code(), e.details() or "", []
    return grpc.StatusCode.OK, "", got


@pytest.fixture(scope="module")
def channels(stack):
    """One channel per principal, shared by this module's calls."""
    return {p: stack.channel(p) for p in list(ROLE) + list(REFUSED_AT_TLS)}


@pytest.fixture(scope="module")
def sessions(stack):
    """account -> (its certificate's channel, its token's metadata), one login each."""
    return {a: (stack.channel(stack.account(a)[2]), stack.login(a)) for a in ACCOUNT_ROLE}


def test_matrix_covers_every_method_and_role(stack):
    assert set(api_methods(stack.pb)) == set(ALLOWED) | LONG_LIVED, \
        "a method of the protos is missing from the permission matrix (or vice versa)"
    assert set(EMPTY_REQUEST_ANSWER) <= set(ALLOWED)
    assert set(ROLE.values()) == ROLES_OF_DOCS
    # every role a certificate may not exercise on its own is exercised by an account
    assert {ROLE[p] for p in ADMIN_CHANNEL} <= set(ACCOUNT_ROLE.values())
    for p in waygate_proto.PRINCIPALS:
        assert p in ROLE, "dev principal %s has no row in the matrix" % p


@pytest.mark.parametrize("principal", list(ROLE) + list(REFUSED_AT_TLS))
@pytest.mark.parametrize("method", list(ALLOWED))
def test_permission(stack, channels, method, principal):
    streaming = api_methods(stack.pb)[method]
    want, words = expected(method, principal)
    code, details, got = call(channels[principal], method, streaming)
    assert code == want, "%s as %s: %s %r, expected %s" % (method, principal, code.name,
                                                           details, want.name)
    if words is not None:
        assert words in details, details
    if method == HEALTH and code == grpc.StatusCode.OK:
        resp = stack.pb.health.HealthCheckResponse.FromString(got[0])
        assert resp.status == stack.pb.health.HealthCheckResponse.SERVING


@pytest.mark.parametrize("account", list(ACCOUNT_ROLE))
@pytest.mark.parametrize("method", list(ALLOWED))
def test_permission_of_account(stack, sessions, method, account):
    """The account's role applies over its certificate with its token (Art. 31, 34)."""
    streaming = api_methods(stack.pb)[method]
    want, words = expected_of_role(method, ACCOUNT_ROLE[account])
    if method == "/waygate.v1.Admin/ChangePassword":  # a token may change its own password
        want, words = grpc.StatusCode.INVALID_ARGUMENT, "old_password: is required"
    ch, md = sessions[account]
    code, details, got = call(ch, method, streaming, md)
    assert code == want, "%s as account %s: %s %r, expected %s" % (method, account, code.name,
                                                                   details, want.name)
    if words is not None:
        assert words in details, details
