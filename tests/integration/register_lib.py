"""The suspicious-customer register (phone_owner, phone_sender; part 12 Art. 7) around a
destruction, shared by test_retention.py and test_bulk.py: what a destruction must leave of it
(sql/046_register_forgets_destroyed_records.sql).

customers() submits three customers' waybills, each with a victim (to be destroyed) and, for two,
a survivor:
  - alone: the victim alone has its phone;
  - shared: the victim and a survivor share a phone with two ID numbers (suspicious, 2 senders);
  - same: the victim and then a survivor of the same sender (phone and ID number), the victim
    first, so the register's pair names the victim.
After the destruction, check_forgotten() finds no register row naming a victim or holding a
pair only a victim held, and the survivors' facts recounted; then check_new_sender() submits a
waybill with the lone victim's phone and another ID number: not suspicious, and the regulator
report's suspicious count does not grow."""

import datetime
import json

from query_data import new_waybill, submit


def phone_of(stack, rid):
    return stack.psql("SELECT encode(sender_phone_bidx, 'hex') FROM waybill WHERE id = '%s'"
                      % rid)[0]


def id_of(stack, rid):
    return stack.psql("SELECT encode(sender_id_bidx, 'hex') FROM waybill WHERE id = '%s'"
                      % rid)[0]


def owner(stack, phone):
    """The phone's phone_owner row: [] or ['senders|suspicious|first_record|first_id_bidx']."""
    return stack.psql("SELECT senders, suspicious, first_record, encode(first_id_bidx, 'hex') "
                      "FROM phone_owner WHERE phone_bidx = decode('%s', 'hex')" % phone)


def pairs(stack, phone):
    """The phone's phone_sender rows: 'id_bidx|first_record', by id_bidx."""
    return stack.psql("SELECT encode(id_bidx, 'hex'), first_record FROM phone_sender "
                      "WHERE phone_bidx = decode('%s', 'hex') ORDER BY 1" % phone)


def reported_suspicious(stack):
    """The monthly regulator report's suspicious count (`waygatectl report monthly`, which
    counts as Compliance.Report does: report_suspicious(), sql/010)."""
    month = (datetime.datetime.utcnow() + datetime.timedelta(hours=8)).strftime("%Y-%m")
    r = stack.ctl("report", "monthly", "--month", month, "--format", "json",
                  "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["suspicious_list_size"]


def customers(stack, submit_victim, submit_survivor):
    """Submits the three customers (module docstring) with submit_victim(stack, w) and
    submit_survivor(stack, w), each returning the id; returns {name: (waybill, id)} for
    alone, shared_victim, shared_survivor, same_victim, same_survivor."""
    out = {}
    w = new_waybill(stack, "a")
    out["alone"] = (w, submit_victim(stack, w))
    w = new_waybill(stack, "a")
    out["shared_victim"] = (w, submit_victim(stack, w))
    s = new_waybill(stack, "a")
    s.sender.phone = w.sender.phone                   # same phone, another ID number
    assert s.sender.id_number != w.sender.id_number
    out["shared_survivor"] = (s, submit_survivor(stack, s))
    w = new_waybill(stack, "a")
    out["same_victim"] = (w, submit_victim(stack, w))
    s = new_waybill(stack, "a")
    s.sender.CopyFrom(w.sender)                       # the same sender again
    out["same_survivor"] = (s, submit_survivor(stack, s))

    shared = phone_of(stack, out["shared_victim"][1])
    assert owner(stack, shared)[0].split("|")[:3] == ["2", "t", out["shared_victim"][1]]
    same = phone_of(stack, out["same_victim"][1])
    assert pairs(stack, same) == ["%s|%s" % (id_of(stack, out["same_victim"][1]),
                                             out["same_victim"][1])]
    return out


def facts(stack, c):
    """What check_forgotten() needs, read before the destruction: the phones and ID blind
    indexes."""
    return {k: (phone_of(stack, rid), id_of(stack, rid)) for k, (_, rid) in c.items()}


def check_forgotten(stack, c, f):
    """After the victims' destruction: nothing of them is left in the register; what survivors
    taught it stays, recounted."""
    victims = [c[k][1] for k in ("alone", "shared_victim", "same_victim")]
    vs = "('%s')" % "','".join(victims)
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s" % vs) == ["0"]
    assert stack.psql("SELECT count(*) FROM phone_sender WHERE first_record IN %s" % vs) == ["0"]
    assert stack.psql("SELECT count(*) FROM phone_owner WHERE first_record IN %s" % vs) == ["0"]
    # the lone victim's phone <-> ID number link is gone
    phone, _ = f["alone"]
    assert owner(stack, phone) == [] and pairs(stack, phone) == []
    # the shared phone keeps its survivor alone: one sender, no longer suspicious
    phone, _ = f["shared_victim"]
    survivor = c["shared_survivor"][1]
    assert pairs(stack, phone) == ["%s|%s" % (f["shared_survivor"][1], survivor)]
    assert owner(stack, phone) == ["1|f|%s|%s" % (survivor, f["shared_survivor"][1])]
    assert stack.psql("SELECT flagged_at IS NULL FROM phone_owner "
                      "WHERE phone_bidx = decode('%s', 'hex')" % phone) == ["t"]
    # the same sender's pair stays, named by its surviving waybill
    phone, idb = f["same_victim"]
    survivor = c["same_survivor"][1]
    assert pairs(stack, phone) == ["%s|%s" % (idb, survivor)]
    assert owner(stack, phone) == ["1|f|%s|%s" % (survivor, idb)]
    # the register still lists the survivor's phone as what it is; no line names a victim
    r = stack.ctl("suspicious", "list", "--limit", "1000000", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert not [v for v in victims if v in r.stdout], r.stdout


def check_new_sender(stack, c, f):
    """A new waybill with the lone victim's phone and another ID number is no second sender of
    it: one sender, not suspicious, and the report's suspicious count is unchanged."""
    before = reported_suspicious(stack)
    w = new_waybill(stack, "a")
    w.sender.phone = c["alone"][0].sender.phone
    assert w.sender.id_number != c["alone"][0].sender.id_number
    rid = submit(stack, w)
    phone, _ = f["alone"]
    assert phone_of(stack, rid) == phone
    assert owner(stack, phone) == ["1|f|%s|%s" % (rid, id_of(stack, rid))]
    assert pairs(stack, phone) == ["%s|%s" % (id_of(stack, rid), rid)]
    assert reported_suspicious(stack) == before
    assert before == int(stack.psql("SELECT count(*) FROM phone_owner WHERE suspicious")[0])
