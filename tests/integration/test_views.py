"""Field views from the policy file (docs/policy.md; Art. 34, least privilege): table-driven.

One waybill is submitted by courier_a (branch a). For every principal of a role that may call
WaybillQuery/Get, the view it gets is compared field by field with the view computed HERE, in
Python, from deploy/policy.conf and the submitted clear values (masking rules of docs/roles.md
re-implemented independently), redacted_fields included. Then the running gateway is pointed at
a policy file that differs from deploy/policy.conf in ONE cell (SIGHUP): exactly that field of
that role's view changes, nothing else, for no other role. A bad policy file on SIGHUP keeps the
running policy and the log names the file, the line and the reason. Finally the built-in policy
comes back (the [policy] file removed from waygated.conf, SIGHUP), so that the modules sharing
the session's stack see the defaults.

Scope: until the destination branch joins the record (routing table, the query issue), only
origin-branch principals see it; branch b's get NOT_FOUND."""

import configparser
import itertools
import os
import re
import signal
import subprocess
import time

import grpc
import pytest

from conftest import BUILD, ROOT, wait_for
from test_foundation import rpc_error
import waygate_proto

SUBMIT = "/waygate.v1.WaybillIntake/Submit"
GET = "/waygate.v1.WaybillQuery/Get"
# numeric offset of this module's waybill numbers in each segment (test_intake 31e6,
# test_tamper 47e6, query_data 53e6)
VIEWS_OFFSET = 59_000_000
POLICY_CONF = os.path.join(ROOT, "deploy", "policy.conf")

# dev-stack principal -> (role, branch) (deploy/gen-certs)
PRINCIPALS = {
    "courier_a": ("courier", "a"),
    "courier_b": ("courier", "b"),
    "branch_a": ("branch_clerk", "a"),
    "branch_b": ("branch_clerk", "b"),
    "cs_a": ("customer_service", "a"),
}
# the roles that may call Get (docs/roles.md)
GET_ROLES = {"courier", "branch_clerk", "customer_service"}

# every encrypted field of Waybill and Party (gw_col_field in gateway/domain/record.c)
PARTY_FIELDS = ("name", "phone", "province", "city", "district", "address_detail", "company",
                "id_type", "id_number", "gender")
FIELDS = (["waybill_no", "item_description", "pickup_time"]
          + ["sender." + f for f in PARTY_FIELDS] + ["recipient." + f for f in PARTY_FIELDS])
NUMERIC = {"pickup_time", "sender.id_type", "sender.gender", "recipient.id_type",
           "recipient.gender"}

COMPOUND = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
            "宇文", "司徒", "夏侯", "令狐", "端木")

_counter = itertools.count(1)
TOKEN = object()  # expected: a token (keyed HMAC, tok_ + 20 base32 characters), not computable here
TOKEN_RE = re.compile(r"tok_[a-z2-7]{20}")


# --- the policy file, read independently of the gateway ------------------------------------------

def read_views(text):
    """{role: {field: action}} from a policy file's [view.<role>] sections (missing: omit)."""
    cp = configparser.ConfigParser(inline_comment_prefixes=("#",), comment_prefixes=("#", ";"),
                                   delimiters=("=",), empty_lines_in_values=False)
    cp.optionxform = str
    cp.read_string(text)
    views = {}
    for sec in cp.sections():
        if sec.startswith("view."):
            views[sec[5:]] = dict(cp[sec])
    return views


def action(views, role, field):
    return views.get(role, {}).get(field, "omit")


# --- the masking rules of docs/roles.md, re-implemented ------------------------------------------

def mask_name(s):
    """Surname kept (two characters for a compound surname of a 3+ character name), the rest '*'
    (the inputs below are Chinese names without separators)."""
    keep = 2 if len(s) >= 3 and s[:2] in COMPOUND else 1
    return s[:keep] + "*" * (len(s) - keep)


def mask_phone(s):
    d = re.sub(r"\D", "", s)
    assert len(d) == 11, "this module submits mainland mobiles only"
    return d[0] + "*" * 6 + d[-4:]


def mask_id(s):
    return s[0].upper() + "*" * (len(s) - 2) + s[-1].upper()


def render(field, mode, clear):
    """The expected rendering of one field (clear: its submitted value)."""
    if field in NUMERIC:
        assert mode in ("clear", "omit"), (field, mode)
        return clear if mode == "clear" else 0
    if mode == "clear":
        return clear
    if mode == "omit" or clear == "":
        return ""
    if mode == "mask":
        leaf = field.split(".")[-1]
        if leaf == "name":
            return mask_name(clear)
        if leaf == "phone":
            return mask_phone(clear)
        if leaf == "id_number":
            return mask_id(clear)
        return "****"
    assert mode == "token", mode
    return TOKEN


def value(msg, field):
    for part in field.split("."):
        msg = getattr(msg, part)
    return msg


def expected_view(views, role, w):
    """(field -> expected value, expected redacted_fields) of role's view of waybill w."""
    out, redacted = {}, set()
    for f in FIELDS:
        mode = action(views, role, f)
        clear = value(w, f)
        if f == "waybill_no":
            clear = clear.upper()
        out[f] = render(f, mode, clear)
        if mode != "clear" and clear not in ("", 0):
            redacted.add(f)
    return out, redacted


# --- data and calls ------------------------------------------------------------------------------

def number_in(stack, branch, n):
    m = re.fullmatch(r"([A-Z]*):(\d+)-(\d+)", stack.env["WAYGATE_SEGMENT_%s" % branch.upper()])
    prefix, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
    assert lo + VIEWS_OFFSET + n <= hi
    return "%s%d" % (prefix, lo + VIEWS_OFFSET + n)


def new_waybill(stack):
    """A valid waybill of branch a with every field set (synthetic values)."""
    pb = stack.pb
    n = next(_counter)
    w = pb.common.Waybill(waybill_no=number_in(stack, "a", n), item_description="檀木书签礼盒%d" % n,
                          pickup_time=int(time.time()) // 60 * 60 - 7200,
                          dest_region_code="440305", weight_grams=900 + n, service_type="standard")
    w.sender.CopyFrom(pb.common.Party(
        name="欧阳澍霁", phone="1390571%04d" % (3000 + n), province="浙江省", city="杭州市",
        district="西湖区", address_detail="文三路%d号玥湖苑3幢201室" % (10 + n),
        company="琛翊科技第%d分公司" % n, id_type=pb.common.ID_TYPE_RESIDENT_CARD,
        id_number="33010619880312%02d1" % n + "X", gender=pb.common.GENDER_MALE))
    w.sender.id_number = w.sender.id_number[:17] + id_check_char(w.sender.id_number[:17])
    w.recipient.CopyFrom(pb.common.Party(
        name="李珏琛", phone="1381234%04d" % (5000 + n), province="广东省", city="深圳市",
        district="南山区", address_detail="科技园南路%d号A座1201" % n,
        company="昶曦贸易第%d部" % n, id_type=pb.common.ID_TYPE_RESIDENT_CARD,
        id_number="44030519920107%02d2" % n + "0", gender=pb.common.GENDER_FEMALE))
    w.recipient.id_number = (w.recipient.id_number[:17]
                             + id_check_char(w.recipient.id_number[:17]))
    return w


def id_check_char(d17):
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * k for c, k in zip(d17, weights)) % 11]


def call(stack, method, req, resp_cls, principal):
    return waygate_proto.unary(stack.shared_channel(principal), method, req, resp_cls, timeout=10)


def get(stack, number, principal):
    return call(stack, GET, stack.pb.query.GetRequest(waybill_no=number),
                stack.pb.common.WaybillView, principal)


def submitted(stack):
    w = new_waybill(stack)
    call(stack, SUBMIT, stack.pb.intake.SubmitRequest(waybill=w), stack.pb.intake.SubmitResponse,
         "courier_a")
    return w


def check_view(view, views, role, w, principal):
    want, want_red = expected_view(views, role, w)
    got = {f: value(view.waybill, f) for f in FIELDS}
    diff = {f: (got[f], want[f]) for f in FIELDS
            if (not TOKEN_RE.fullmatch(got[f]) if want[f] is TOKEN else got[f] != want[f])}
    assert not diff, "%s (%s): fields differ from the policy (got, expected): %r" % (
        principal, role, diff)
    assert set(view.redacted_fields) == want_red, (principal, sorted(view.redacted_fields),
                                                   sorted(want_red))
    # the clear operational columns are always there
    assert view.waybill.origin_branch == "a"
    assert view.waybill.dest_region_code == w.dest_region_code
    assert view.waybill.weight_grams == w.weight_grams


def check_all(stack, views, w):
    """Every principal: its role's exact view, or NOT_FOUND outside its scope."""
    seen = {}
    for principal, (role, branch) in PRINCIPALS.items():
        assert role in GET_ROLES
        if branch != "a":
            e = rpc_error(lambda: get(stack, w.waybill_no, principal))
            assert e.code() == grpc.StatusCode.NOT_FOUND, (principal, e)
            continue
        view = get(stack, w.waybill_no, principal)
        check_view(view, views, role, w, principal)
        seen[principal] = view
    return seen


# --- reloading -----------------------------------------------------------------------------------

def conf_path(stack):
    return os.path.join(stack.dir, "waygated.conf")


def write_policy(path, text):
    """Writes a policy file as the operator would: nobody else may write it (go-w)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o644)


def set_policy_file(stack, path):
    """Points waygated.conf's [policy] file at path (None: no [policy] section, the built-in)."""
    with open(conf_path(stack), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"\n# test_views\.py\n\[policy\]\nfile = [^\n]*\n", "\n", text)
    if path is not None:
        text = text.rstrip("\n") + "\n\n# test_views.py\n[policy]\nfile = %s\n" % path
    with open(conf_path(stack), "w", encoding="utf-8") as f:
        f.write(text)


def sighup(stack):
    """Sends SIGHUP; returns the policy reload line the gateway logged after it."""
    since = len(stack.log_lines())
    os.kill(stack.gateway_pid(), signal.SIGHUP)
    lines = wait_for(lambda: [l for l in stack.log_lines()[since:] if "SIGHUP: policy" in l],
                     timeout=10)
    assert lines, "no policy reload logged after SIGHUP"
    return lines[-1]


def default_text():
    with open(POLICY_CONF, encoding="utf-8") as f:
        return f.read()


def change_cell(text, role, field, new):
    """deploy/policy.conf's text with the one line "<field> = ..." of [view.<role>] changed."""
    lines = text.split("\n")
    sec = None
    for i, line in enumerate(lines):
        m = re.match(r"\[(.*)\]\s*$", line.strip())
        if m:
            sec = m.group(1)
        elif sec == "view." + role and re.match(r"%s\s*=" % re.escape(field), line.strip()):
            lines[i] = "%s = %s" % (field, new)
            return "\n".join(lines)
    raise AssertionError("no %s in [view.%s]" % (field, role))


# --- tests ---------------------------------------------------------------------------------------

def test_every_role_gets_exactly_the_policy_view(stack):
    views = read_views(default_text())
    for role in GET_ROLES:
        assert role in views, "deploy/policy.conf has no [view.%s]" % role
        assert set(views[role]) <= set(FIELDS), set(views[role]) - set(FIELDS)
    w = submitted(stack)
    seen = check_all(stack, views, w)
    assert set(seen) == {"courier_a", "branch_a", "cs_a"}
    # spot checks of the defaults, in words: a courier reads the full delivery address, the
    # clerk and customer service only to the district; nobody but the policy's clear fields
    # sees a name or a phone in clear
    assert seen["courier_a"].waybill.recipient.address_detail == w.recipient.address_detail
    assert seen["branch_a"].waybill.recipient.address_detail == "****"
    assert seen["cs_a"].waybill.sender.id_number == ""
    for v in seen.values():
        assert v.waybill.sender.name == "欧阳**"
        assert w.sender.phone not in str(v) and w.recipient.phone not in str(v)


def test_one_cell_changed_changes_exactly_that_field(stack, tmp_path):
    base = default_text()
    views = read_views(base)
    w = submitted(stack)
    path = os.path.join(stack.dir, "policy_views.conf")
    changed = change_cell(base, "courier", "sender.address_detail", "clear")
    write_policy(path, changed)
    set_policy_file(stack, path)
    try:
        line = sighup(stack)
        assert "policy reloaded from %s" % path in line, line
        new_views = read_views(changed)
        # the tables differ in that one cell only
        diff = [(r, f) for r in GET_ROLES for f in FIELDS
                if action(views, r, f) != action(new_views, r, f)]
        assert diff == [("courier", "sender.address_detail")]
        seen = check_all(stack, new_views, w)
        assert seen["courier_a"].waybill.sender.address_detail == w.sender.address_detail
        assert "sender.address_detail" not in seen["courier_a"].redacted_fields

        # a bad file: refused on SIGHUP naming file:line; the running policy (the changed one)
        # stays
        lines = changed.split("\n")
        bad_line = next(i for i, l in enumerate(lines)
                        if l.startswith("sender.address_detail = clear"))
        lines[bad_line] = "recipient.phne = mask"
        write_policy(path, "\n".join(lines))
        line = sighup(stack)
        assert "policy not reloaded" in line, line
        assert "%s:%d: [view.courier] recipient.phne: unknown field" % (path, bad_line + 1) \
            in line, line
        check_all(stack, new_views, w)

        # over the role's ceiling (Art. 34: a courier's phones are masked): refused on
        # SIGHUP naming file:line, role, field and rule; the running policy stays
        over = change_cell(changed, "courier", "recipient.phone", "clear")
        bad_line = next(i for i, l in enumerate(over.split("\n"))
                        if l.startswith("recipient.phone = clear"))
        write_policy(path, over)
        line = sighup(stack)
        assert "policy not reloaded" in line, line
        assert "%s:%d: [view.courier] recipient.phone: clear exceeds the ceiling of courier: " \
            "names, phones and ID numbers only mask, token or omit (clear only by Reveal)" \
            % (path, bad_line + 1) in line, line
        check_all(stack, new_views, w)
    finally:
        set_policy_file(stack, None)
        line = sighup(stack)
    assert "policy reloaded from the built-in default" in line, line
    check_all(stack, views, w)


@pytest.mark.parametrize("role,field,new", [
    ("branch_clerk", "sender.id_number", "omit"),
    ("customer_service", "recipient.phone", "token"),
    ("courier", "pickup_time", "clear"),
])
def test_other_single_cells(stack, role, field, new):
    """More single-cell changes, one mode each: exactly that field of that role changes; a token
    is the same for the same value in two records and is not the value."""
    base = default_text()
    changed = change_cell(base, role, field, new)
    views, new_views = read_views(base), read_views(changed)
    assert [(r, f) for r in GET_ROLES for f in FIELDS
            if action(views, r, f) != action(new_views, r, f)] == [(role, field)]
    w1 = submitted(stack)
    w3 = new_waybill(stack)  # another record with the same recipient phone
    w3.recipient.phone = w1.recipient.phone
    call(stack, SUBMIT, stack.pb.intake.SubmitRequest(waybill=w3), stack.pb.intake.SubmitResponse,
         "courier_a")
    path = os.path.join(stack.dir, "policy_cell.conf")
    write_policy(path, changed)
    set_policy_file(stack, path)
    try:
        assert "policy reloaded from %s" % path in sighup(stack)
        seen = check_all(stack, new_views, w1)
        principal = next(p for p, (r, _) in PRINCIPALS.items() if r == role and p in seen)
        got = value(seen[principal].waybill, field)
        if new == "token":
            assert TOKEN_RE.fullmatch(got) and got != value(w1, field), got
            other = value(get(stack, w3.waybill_no, principal).waybill, field)
            assert other == got, "the same phone in two records gave two tokens"
            assert value(get(stack, w1.waybill_no, principal).waybill, field) == got
        check_all(stack, new_views, w3)
    finally:
        set_policy_file(stack, None)
        assert "built-in default" in sighup(stack)
    check_all(stack, views, w1)


def test_unknown_role_in_policy_file_keeps_running_policy(stack):
    """An unknown role (and an unknown action) in a new file: refused, the defaults stay."""
    views = read_views(default_text())
    w = submitted(stack)
    path = os.path.join(stack.dir, "policy_bad.conf")
    write_policy(path, "# a policy with a typo\n[view.curier]\nrecipient.phone = clear\n")
    set_policy_file(stack, path)
    try:
        line = sighup(stack)
        assert "policy not reloaded" in line and "%s:2: [view.curier]: unknown role" % path \
            in line, line
        check_all(stack, views, w)
    finally:
        set_policy_file(stack, None)
        assert "built-in default" in sighup(stack)


def test_daemon_refuses_to_start_with_a_bad_policy_file(stack):
    """waygated (a real start, not --check-config) exits 2 naming file:line and the reason, also
    for a good file that group or others may write; deploy/policy.conf itself (a copy, go-w) is
    accepted as a [policy] file."""
    bad = os.path.join(stack.dir, "policy_start_bad.conf")
    write_policy(bad, default_text().replace("[levels]\n", "[levels]\nbackend = 1\n", 1))
    good = os.path.join(stack.dir, "policy_start_good.conf")
    write_policy(good, default_text())
    writable = os.path.join(stack.dir, "policy_start_writable.conf")
    write_policy(writable, default_text())
    os.chmod(writable, 0o664)
    with open(bad, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = lines.index("[levels]")
    bad_line = [i + 1 for i, l in enumerate(lines) if i > start and l.startswith("backend =")][1]
    with open(conf_path(stack), encoding="utf-8") as f:
        base = f.read()
    for name, policy, want_rc in (("start-bad.conf", bad, 2),
                                  ("start-writable.conf", writable, 2),
                                  ("start-default.conf", good, 0)):
        path = os.path.join(stack.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(base + "\n[policy]\nfile = %s\n" % policy)
        args = [os.path.join(BUILD, "waygated"), "-c", path]
        if want_rc == 0:
            args.append("--check-config")  # the stack's own gateway holds the port
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == want_rc, (name, r.returncode, r.stderr)
        if policy == bad:
            assert "%s:%d: [levels] backend: duplicate role" % (bad, bad_line) in r.stderr, \
                r.stderr
        if policy == writable:
            assert "%s: mode 0664 lets group or others write it" % writable in r.stderr, r.stderr
