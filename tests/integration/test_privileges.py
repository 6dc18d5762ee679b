"""Least privilege in PostgreSQL (Art. 34; sql/005_roles.sql). The daemon connects as
waygate_gateway, the CLI as waygate_admin, and only migrations as the owner, waygate. Connected as
the gateway's role, PostgreSQL itself refuses what a compromised gateway would try: deleting
incidents, moving a waybill to another branch, DDL, dropping or disabling the trigger that keeps
the suspicious-customer register, dropping the constraint that refuses a retired KEK version or
undoing a retirement, issuing segments, TRUNCATE. The CLI's role cannot change
incidents either. Each refusal is asserted by its SQLSTATE (42501 insufficient_privilege) and
its message (a missing privilege, or ownership required), and the owner then sees nothing
changed. Positive control: the daemon, on its own role, still stores and reads waybills."""

import os
import re
import subprocess

import pytest

from conftest import PGBIN, wait_for
from test_intake import accepted, get, new_waybill


def as_role(uri, sql):
    """Runs sql with psql as the role in uri; returns the CompletedProcess."""
    return subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t",
                           "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-d", uri,
                           "-c", sql], capture_output=True, text=True, timeout=30)


def refusal(uri, sql):
    """(SQLSTATE, message) of PostgreSQL's refusal of sql; fails the test if it ran."""
    r = as_role(uri, sql)
    assert r.returncode != 0, "PostgreSQL accepted: %s\n%s" % (sql, r.stdout)
    m = re.search(r"ERROR:  ([0-9A-Z]{5}): ([^\n]*)", r.stderr)
    assert m, "no SQLSTATE in psql's error: %r" % r.stderr
    return m.group(1), m.group(2)


def snapshot(stack, rid):
    """What the refused statements would have changed, as the owner sees it: the incidents up to
    now (a later one, recorded by the gateway meanwhile, does not count), the waybills, the
    segments, the trigger, the columns and constraints of waybill, the retired KEK versions, the
    KEK versions' check values."""
    return (stack.psql("SELECT count(*), md5(string_agg(i::text, ',' ORDER BY id)) "
                       "FROM incident i WHERE id <= %d" % INCIDENTS_SEEN[0]),
            stack.psql("SELECT count(*) FROM waybill"),
            stack.psql("SELECT md5(w::text) FROM waybill w WHERE id = '%s'" % rid),
            stack.psql("SELECT count(*), md5(string_agg(s::text, ',' ORDER BY id)) FROM segment s"),
            stack.psql("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'waybill'::regclass"
                       " AND NOT tgisinternal"),
            stack.psql("SELECT attname FROM pg_attribute WHERE attrelid = 'waybill'::regclass"
                       " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"),
            stack.psql("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                       " WHERE conrelid = 'waybill'::regclass ORDER BY conname"),
            stack.psql("SELECT suite, version FROM kek_retired ORDER BY 1, 2"),
            stack.psql("SELECT k::text FROM kek_version k ORDER BY suite, version"))


INCIDENTS_SEEN = [0]


@pytest.fixture(scope="module")
def record(stack):
    """One waybill stored through the gateway, and one incident (a Get of an unknown number is
    not one, so a segment violation is provoked): rows for the refused statements to aim at."""
    w = new_waybill(stack, "a")
    rid = accepted(stack, w)
    if stack.psql("SELECT count(*) FROM incident")[0] == "0":
        stack.psql("INSERT INTO incident (severity, kind, detail) "
                   "VALUES ('low', 'test_privileges', 'a row to aim at')")
    INCIDENTS_SEEN[0] = int(stack.psql("SELECT max(id) FROM incident")[0])
    return w, rid


AUDIT_COLS = "(chain, seq, at_us, actor, action, outcome, confidential, prev_hash, hash)"
ZERO32 = "decode(repeat('00', 32), 'hex')"
NEXT_SEQ = "(SELECT coalesce(max(r.seq), 0) + 1 FROM audit_record r WHERE r.chain = c.id)"
IN_ORDER = r'^new row violates row-level security policy "audit_record_%s_in_order" for table ' \
    r'"audit_record"$'
OVER_A_RECORD = r'^new row violates row-level security policy "audit_checkpoint_%s_over_a_record"' \
    r' for table "audit_checkpoint"$'
BEYOND_THE_LAST = r'^new row violates row-level security policy ' \
    r'"audit_checkpoint_%s_beyond_the_last" for table "audit_checkpoint"$'


def behind_the_last(where):
    """A checkpoint with a junk signature over a stored record of the chain `where` picks, with its
    hash (sql/034 lets that through), at or behind the chain's last checkpoint: one without a
    checkpoint of its own when there is one (the review planted one over each of seq 1 to 13 under
    a real checkpoint at 14), else the last checkpoint's own seq."""
    return ("INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, signature) "
            "SELECT r.chain, r.seq, r.hash, 0, k.key_id, decode(repeat('11', 64), 'hex') "
            "FROM audit_record r JOIN audit_chain c ON c.id = r.chain, audit_key k WHERE " + where +
            " AND r.seq <= (SELECT max(x.seq) FROM audit_checkpoint x WHERE x.chain = r.chain) "
            "ORDER BY EXISTS (SELECT 1 FROM audit_checkpoint x WHERE x.chain = r.chain "
            "AND x.seq = r.seq), r.seq DESC LIMIT 1")

# (name, SQL, SQLSTATE, message pattern): what the gateway's role must not do.
GATEWAY_REFUSED = [
    ("delete_incident", "DELETE FROM incident",
     "42501", r"^permission denied for table incident$"),
    ("update_incident", "UPDATE incident SET reported_at = now()",
     "42501", r"^permission denied for table incident$"),
    ("backdate_incident", "INSERT INTO incident (severity, kind, occurred_at) "
     "VALUES ('low', 'x', now() - interval '1 year')",
     "42501", r"^permission denied for table incident$"),
    ("update_waybill_branch", "UPDATE waybill SET origin_branch = 'b' WHERE id = '{rid}'",
     "42501", r"^permission denied for table waybill$"),
    ("delete_waybill", "DELETE FROM waybill WHERE id = '{rid}'",
     "42501", r"^permission denied for table waybill$"),
    # sql/053: the fields of a version 3 record, inserted and read, never rewritten; the per-field
    # ciphertexts of versions 1 and 2 no longer written
    ("update_fields", "UPDATE waybill SET fields_ct = NULL WHERE id = '{rid}'",
     "42501", r"^permission denied for table waybill$"),
    ("insert_field_ciphertext", "INSERT INTO waybill (sender_name_ct) VALUES ('\\x00')",
     "42501", r"^permission denied for table waybill$"),
    ("alter_table", "ALTER TABLE waybill ADD COLUMN note text",
     "42501", r"^must be owner of table waybill$"),
    ("drop_trigger", "DROP TRIGGER waybill_phone_owner ON waybill",
     "42501", r"^must be owner of relation waybill$"),
    ("disable_trigger", "ALTER TABLE waybill DISABLE TRIGGER waybill_phone_owner",
     "42501", r"^must be owner of table waybill$"),
    # sql/033: a retired KEK version stays refused (the constraint lists the pairs of
    # kek_retired, and is rebuilt from it on every change)
    ("drop_kek_retired_constraint", "ALTER TABLE waybill DROP CONSTRAINT IF EXISTS "
     "waybill_kek_retired", "42501", r"^must be owner of table waybill$"),
    ("unretire_kek", "DELETE FROM kek_retired",
     "42501", r"^permission denied for table kek_retired$"),
    # sql/036: the gateway registers a KEK version the database lacks, and never changes or
    # removes the check value of one it knows (a planted or rewritten value would let a
    # divergent keyring in, or shut the right one out), nor dates a registration
    ("rewrite_kek_check_value", "UPDATE kek_version SET check_value = decode(repeat('00', 32), "
     "'hex')", "42501", r"^permission denied for table kek_version$"),
    ("forget_kek_version", "DELETE FROM kek_version",
     "42501", r"^permission denied for table kek_version$"),
    ("truncate_kek_version", "TRUNCATE kek_version",
     "42501", r"^permission denied for table kek_version$"),
    ("backdate_kek_version", "INSERT INTO kek_version (suite, version, check_value, first_seen, "
     "first_seen_by) VALUES (1, 2000000000, decode(repeat('00', 32), 'hex'), now() - interval "
     "'1 year', 'x')", "42501", r"^permission denied for table kek_version$"),
    ("replica_mode_skips_triggers", "SET session_replication_role = replica",
     "42501", r'^permission denied to set parameter "session_replication_role"$'),
    ("issue_segment", "INSERT INTO segment (branch, prefix, range_from, range_to, issued_by) "
     "VALUES ('a', 'WG', 9000000000, 9000000009, 'gateway')",
     "42501", r"^permission denied for table segment$"),
    ("truncate_incident", "TRUNCATE incident",
     "42501", r"^permission denied for table incident$"),
    ("truncate_waybill", "TRUNCATE waybill",
     "42501", r"^permission denied for table waybill$"),
    ("clear_suspicious_flag", "UPDATE phone_owner SET suspicious = false",
     "42501", r"^permission denied for table phone_owner$"),
    ("create_table", "CREATE TABLE stash (v text)",
     "42501", r"^permission denied for schema public$"),
    ("become_owner", "SET ROLE waygate",
     "42501", r'^permission denied to set role "waygate"$'),
    # sql/018 lets the gateway set a new outbox row's lease (its fast path), nothing more: not a
    # row born parked, attempted or with a chosen delivery id
    ("insert_outbox_parked", "INSERT INTO outbox (kind, waybill_id, parked_at) "
     "VALUES (1, '{rid}', now())", "42501", r"^permission denied for table outbox$"),
    ("insert_outbox_delivery_id", "INSERT INTO outbox (kind, waybill_id, delivery_id) "
     "VALUES (1, '{rid}', gen_random_uuid())", "42501", r"^permission denied for table outbox$"),
    # sql/019: the gateway writes only gateway chains; waygatectl's chain 'ctl' is not its to
    # extend (a planted record there would be signed over by the CLI's next checkpoint)
    ("audit_record_into_ctl_chain", "INSERT INTO audit_record " + AUDIT_COLS +
     " VALUES ('ctl', 1000000, 0, 'alice', 'account.disable', 'ok', false, " + ZERO32 + ", " +
     ZERO32 + ")", "42501",
     r'^new row violates row-level security policy for table "audit_record"$'),
    ("audit_checkpoint_on_ctl_chain", "INSERT INTO audit_checkpoint (chain, seq, head_hash, "
     "at_us, key_id, signature) SELECT 'ctl', 1000000, " + ZERO32 + ", 0, key_id, "
     "decode(repeat('11', 64), 'hex') FROM audit_key LIMIT 1", "42501",
     r'^new row violates row-level security policy for table "audit_checkpoint"$'),
    ("audit_chain_of_the_cli", "INSERT INTO audit_chain (id, kind) VALUES ('ctl-2', 'ctl')",
     "42501", r'^new row violates row-level security policy for table "audit_chain"$'),
    # a negative count would be encoded as absent: two values, one hash
    ("audit_negative_count", "INSERT INTO audit_record " + AUDIT_COLS[:-1] + ", count) "
     "SELECT id, " + NEXT_SEQ + ", 0, 'clerk_a', 'search.phone', 'ok', false, " + ZERO32 + ", " +
     ZERO32 + ", -5 FROM audit_chain c WHERE kind = 'gateway' LIMIT 1", "23514",
     r'violates check constraint "audit_record_count_check"'),
    # sql/026: a record the bundle format cannot hold (an empty actor, a text over 1024 bytes)
    # would stop `audit verify` and every export at that row
    ("audit_empty_actor", "INSERT INTO audit_record " + AUDIT_COLS + " SELECT id, " + NEXT_SEQ +
     ", 0, '', 'search.phone', 'ok', false, " + ZERO32 + ", " + ZERO32 + " FROM audit_chain c "
     "WHERE kind = 'gateway' LIMIT 1", "23514",
     r'violates check constraint "audit_record_encodable"'),
    ("audit_text_too_long", "INSERT INTO audit_record " + AUDIT_COLS[:-1] + ", detail) "
     "SELECT id, " + NEXT_SEQ + ", 0, 'clerk_a', 'search.phone', 'ok', false, " + ZERO32 + ", " +
     ZERO32 + ", repeat('x', 1025) FROM audit_chain c WHERE kind = 'gateway' LIMIT 1", "23514",
     r'violates check constraint "audit_record_encodable"'),
    # sql/034: a record only at the seq after one its chain holds. One further on would be read
    # as the head at the gateway's next start; at the largest bigint the gateway could write no
    # record after it (audit.break included) and every audited action failed
    ("audit_record_past_the_next_seq", "INSERT INTO audit_record " + AUDIT_COLS +
     " SELECT id, " + NEXT_SEQ + " + 1, 0, 'clerk_a', 'search.phone', 'ok', false, " + ZERO32 +
     ", " + ZERO32 + " FROM audit_chain c WHERE kind = 'gateway' LIMIT 1", "42501",
     IN_ORDER % "gateway"),
    ("audit_record_at_the_largest_seq", "INSERT INTO audit_record " + AUDIT_COLS +
     " SELECT id, 9223372036854775807, 0, 'clerk_a', 'search.phone', 'ok', false, " + ZERO32 +
     ", " + ZERO32 + " FROM audit_chain c WHERE kind = 'gateway' LIMIT 1", "42501",
     IN_ORDER % "gateway"),
    # sql/034: a checkpoint only over a record its chain holds, with that record's hash. Rows
    # planted ahead of the head took the place of every checkpoint the gateway signed there
    ("audit_checkpoint_ahead_of_the_head", "INSERT INTO audit_checkpoint (chain, seq, head_hash, "
     "at_us, key_id, signature) SELECT c.id, " + NEXT_SEQ + ", " + ZERO32 + ", 0, k.key_id, "
     "decode(repeat('11', 64), 'hex') FROM audit_chain c, audit_key k WHERE c.kind = 'gateway' "
     "LIMIT 1", "42501", OVER_A_RECORD % "gateway"),
    ("audit_checkpoint_over_another_hash", "INSERT INTO audit_checkpoint (chain, seq, head_hash, "
     "at_us, key_id, signature) SELECT c.id, " + NEXT_SEQ + " - 1, " + ZERO32 + ", 0, k.key_id, "
     "decode(repeat('11', 64), 'hex') FROM audit_chain c, audit_key k WHERE c.kind = 'gateway' "
     "AND EXISTS (SELECT 1 FROM audit_record r WHERE r.chain = c.id) LIMIT 1", "42501",
     # the head, once its checkpoint is written, is behind the last too (sql/045), and
     # PostgreSQL names the first policy the row fails, by name
     "(%s)|(%s)" % (OVER_A_RECORD % "gateway", BEYOND_THE_LAST % "gateway")),
    # sql/045: a checkpoint only beyond every checkpoint of its chain. Junk rows over records
    # already signed made `audit verify` fail for good and the exporters anchor and cover a range
    # with them instead of the real checkpoint after them
    ("audit_checkpoint_behind_the_last", behind_the_last("c.kind = 'gateway'"), "42501",
     BEYOND_THE_LAST % "gateway"),
    # sql/035: a key only under its own id (a key listed twice ended every check at the keys),
    # and an SM2 key only on the curve (a regulator's verifier refused every bundle listing one)
    ("audit_key_under_another_id", "INSERT INTO audit_key (key_id, public_key, algorithm) "
     "SELECT repeat('ab', 32), public_key, algorithm FROM audit_key LIMIT 1", "23514",
     r'violates check constraint "audit_key_id_is_its_hash"'),
    ("audit_key_off_the_curve", "INSERT INTO audit_key (key_id, public_key, algorithm) "
     "SELECT encode(sha256(k), 'hex'), k, 'sm2' FROM (SELECT '\\x04'::bytea || "
     "decode(repeat('01', 64), 'hex') AS k) s", "23514",
     r'violates check constraint "audit_key_sm2_on_the_curve"'),
]

# sql/008: the trail is append-only to both login roles: no UPDATE, DELETE or TRUNCATE privilege
# on any audit table (the trigger behind it refuses the owner too: unit:test_audit_db). The CLI's
# UPDATE (kind) of audit_chain serves its row lock: relabel_own_chain, below. sql/052: nor on the
# marks of the audit spool's entries written (a mark removed, its entry is written again).
APPEND_ONLY = [("%s_%s" % (sql.split()[0].lower(), table), sql % table, table)
               for table, change in (("audit_record", "actor = 'x'"),
                                     ("audit_checkpoint", "at_us = 0"),
                                     ("audit_key", "created_at = now()"),
                                     ("audit_chain", "created_at = now()"),
                                     ("audit_spool_entry", "written_at = now()"))
               for sql in ("UPDATE %s SET " + change, "DELETE FROM %s", "TRUNCATE %s")]
GATEWAY_REFUSED += [(name, sql, "42501", r"^permission denied for table %s$" % table)
                    for name, sql, table in APPEND_ONLY]


def checkpoint_premise(stack, name, kind):
    """behind_the_last needs a checkpoint over a stored record of a chain of that kind: the
    gateway signs its head within [audit] checkpoint_ms."""
    if "behind_the_last" in name:
        assert wait_for(lambda: stack.psql(
            "SELECT count(*) FROM audit_checkpoint x JOIN audit_chain c ON c.id = x.chain "
            "JOIN audit_record r ON r.chain = x.chain AND r.seq = x.seq WHERE c.kind = '%s'"
            % kind) != ["0"], 60), "no checkpoint of a %s chain: no premise" % kind


@pytest.mark.parametrize("name,sql,state,pattern", GATEWAY_REFUSED,
                         ids=[c[0] for c in GATEWAY_REFUSED])
def test_gateway_role_refused(stack, record, name, sql, state, pattern):
    _, rid = record
    checkpoint_premise(stack, name, "gateway")
    before = snapshot(stack, rid)
    got_state, message = refusal(stack.pguri_gateway, sql.format(rid=rid))
    assert (got_state, bool(re.search(pattern, message))) == (state, True), (name, message)
    assert snapshot(stack, rid) == before


CLI_REFUSED = [
    ("delete_incident", "DELETE FROM incident", r"^permission denied for table incident$"),
    ("update_incident", "UPDATE incident SET detail = 'rewritten'",
     r"^permission denied for table incident$"),
    ("update_waybill_branch", "UPDATE waybill SET origin_branch = 'b' WHERE id = '{rid}'",
     r"^permission denied for table waybill$"),
    ("update_ciphertext", "UPDATE waybill SET sender_name_ct = NULL WHERE id = '{rid}'",
     r"^permission denied for table waybill$"),
    # sql/053: a version 3 record's fields are rewritten through waybill_reseal alone, and read
    # through waybill_reseal_take alone
    ("update_fields", "UPDATE waybill SET fields_ct = NULL WHERE id = '{rid}'",
     r"^permission denied for table waybill$"),
    ("read_fields", "SELECT fields_ct FROM waybill WHERE id = '{rid}'",
     r"^permission denied for table waybill$"),
    ("delete_segment", "DELETE FROM segment", r"^permission denied for table segment$"),
    # sql/033: the CLI retires a KEK through kek_retire only, and never undoes a retirement
    ("drop_kek_retired_constraint", "ALTER TABLE waybill DROP CONSTRAINT IF EXISTS "
     "waybill_kek_retired", r"^must be owner of table waybill$"),
    ("unretire_kek", "DELETE FROM kek_retired", r"^permission denied for table kek_retired$"),
    # sql/036: nor does it change or forget a KEK version's check value
    ("rewrite_kek_check_value", "UPDATE kek_version SET check_value = decode(repeat('00', 32), "
     "'hex')", r"^permission denied for table kek_version$"),
    ("forget_kek_version", "DELETE FROM kek_version",
     r"^permission denied for table kek_version$"),
    ("alter_table", "ALTER TABLE incident ADD COLUMN note text",
     r"^must be owner of table incident$"),
    # sql/025 lets the CLI clear a lockout (failed_count, locked_until), nothing else of an
    # account: never its password or the forced change
    ("set_a_password", "UPDATE account SET pw_hash = pw_hash",
     r"^permission denied for table account$"),
    ("skip_the_forced_change", "UPDATE account SET must_change = false",
     r"^permission denied for table account$"),
    # sql/019: the CLI writes only its own chain, and changes no chain row (its UPDATE is for
    # the row lock alone)
    ("audit_record_into_gateway_chain", "INSERT INTO audit_record " + AUDIT_COLS +
     " SELECT id, 1000000, 0, 'secadmin', 'lawful.read', 'ok', false, " + ZERO32 + ", " +
     ZERO32 + " FROM audit_chain WHERE kind = 'gateway' LIMIT 1",
     r'^new row violates row-level security policy for table "audit_record"$'),
    ("audit_chain_of_a_gateway", "INSERT INTO audit_chain (id, kind) VALUES ('gw-2', 'gateway')",
     r'^new row violates row-level security policy for table "audit_chain"$'),
    # a gateway's chain id taken first as the CLI's: that gateway would refuse to write it
    ("audit_chain_id_of_a_gateway", "INSERT INTO audit_chain (id, kind) VALUES ('gw-3', 'ctl')",
     r'^new row violates row-level security policy for table "audit_chain"$'),
    ("relabel_own_chain", "UPDATE audit_chain SET kind = 'gateway' WHERE id = 'ctl'",
     r"^the audit trail is append-only: UPDATE on audit_chain refused$"),
    # sql/034, on its own chain as the gateway's role on a gateway's
    ("audit_record_past_the_next_seq_of_ctl", "INSERT INTO audit_record " + AUDIT_COLS +
     " SELECT id, " + NEXT_SEQ + " + 1, 0, 'secadmin', 'segment.issue', 'ok', false, " + ZERO32 +
     ", " + ZERO32 + " FROM audit_chain c WHERE id = 'ctl'", IN_ORDER % "admin"),
    ("audit_checkpoint_ahead_of_the_ctl_head", "INSERT INTO audit_checkpoint (chain, seq, "
     "head_hash, at_us, key_id, signature) SELECT c.id, " + NEXT_SEQ + ", " + ZERO32 + ", 0, "
     "k.key_id, decode(repeat('11', 64), 'hex') FROM audit_chain c, audit_key k "
     "WHERE c.id = 'ctl' LIMIT 1", OVER_A_RECORD % "admin"),
    # sql/045, on its own chain
    ("audit_checkpoint_behind_the_last_of_ctl", behind_the_last("c.id = 'ctl'"),
     BEYOND_THE_LAST % "admin"),
]

CLI_REFUSED += [(name, sql, r"^permission denied for table %s$" % table)
                for name, sql, table in APPEND_ONLY if name != "update_audit_chain"]


@pytest.mark.parametrize("name,sql,pattern", CLI_REFUSED, ids=[c[0] for c in CLI_REFUSED])
def test_cli_role_refused(stack, record, name, sql, pattern):
    _, rid = record
    checkpoint_premise(stack, name, "ctl")
    before = snapshot(stack, rid)
    got_state, message = refusal(stack.pguri, sql.format(rid=rid))
    assert (got_state, bool(re.search(pattern, message))) == ("42501", True), (name, message)
    assert snapshot(stack, rid) == before


def test_cli_cannot_relabel_a_gateway_chain(stack):
    """Relabelling a gateway's chain as 'ctl' (which made the gateway refuse to write it, so
    that every audited action failed) finds no row the CLI's role may change."""
    before = stack.psql("SELECT id, kind FROM audit_chain ORDER BY id")
    assert any(line.endswith("|gateway") for line in before), before
    r = as_role(stack.pguri, "UPDATE audit_chain SET kind = 'ctl' WHERE kind = 'gateway'")
    assert r.returncode == 0, r.stderr
    assert stack.psql("SELECT id, kind FROM audit_chain ORDER BY id") == before


def test_roles_and_ownership(stack):
    """Every object belongs to the owner; the login roles are plain (no superuser, createrole,
    createdb, bypassrls) and not members of the owner."""
    owners = stack.psql("SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'i')")
    assert owners == ["waygate"]
    assert stack.psql("SELECT pg_get_userbyid(proowner), prosecdef FROM pg_proc "
                      "WHERE proname = 'waybill_phone_owner_trg'") == ["waygate|t"]
    rows = stack.psql("SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls, "
                      "pg_has_role(rolname, 'waygate', 'MEMBER') FROM pg_roles "
                      "WHERE rolname IN ('waygate_gateway', 'waygate_admin') ORDER BY 1")
    assert rows == ["waygate_admin|f|f", "waygate_gateway|f|f"]


def test_every_security_definer_function_pins_its_search_path(stack):
    """Every SECURITY DEFINER function of the schema runs with search_path set to the schema and
    then pg_temp (other settings may stand beside it: kek_retire's lock_timeout). Without it, it
    resolves names through the caller's search_path (a login role's temporary table or function
    would take the place of the owner's). CREATE OR REPLACE resets what it does not name, as
    sql/042 did to waybill_custodian (pinned again by sql/043): the next redefinition that
    forgets it fails here."""
    rows = stack.psql("SELECT p.oid::regprocedure, coalesce(array_to_string(p.proconfig, ';'), "
                      "'') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                      "WHERE n.nspname = current_schema() AND p.prosecdef ORDER BY 1")
    assert len(rows) > 10, rows
    loose = [r for r in rows
             if "search_path=public, pg_temp" not in r.split("|", 1)[1].split(";")]
    assert loose == [], loose
    assert "waybill_custodian(uuid)|search_path=public, pg_temp" in rows


def test_daemon_runs_on_its_own_role(stack, record):
    """Positive control: the daemon's sessions are waygate_gateway's, and through them a
    waybill is stored (the trigger keeping the register ran too) and read back."""
    w, rid = record
    users = stack.psql("SELECT DISTINCT usename FROM pg_stat_activity "
                       "WHERE application_name = 'waygated'")
    assert users == ["waygate_gateway"]
    assert get(stack, w.waybill_no).id == rid
    assert stack.psql("SELECT count(*) FROM phone_sender WHERE first_record = '%s'" % rid) == ["1"]


def column_privileges(stack):
    return stack.psql("SELECT grantee, table_name, column_name, privilege_type "
                      "FROM information_schema.column_privileges "
                      "WHERE grantee IN ('waygate_gateway', 'waygate_admin') ORDER BY 1, 2, 3, 4")


def test_roles_migration_reruns_unchanged(stack):
    """sql/005_roles.sql run again by the owner, then sql/053 (the one later migration with
    column grants on a table whose grants 005 revokes and gives again from its own list:
    waybill.fields_ct), succeed and leave every grant as it was."""
    before = column_privileges(stack)
    assert ("waygate_gateway|incident|severity|INSERT" in before
            and "waygate_admin|waybill|dek_wrapped|UPDATE" in before
            and "waygate_gateway|waybill|fields_ct|INSERT" in before), before
    for name in ("005_roles.sql", "053_fields_sealed_together.sql"):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "sql", name)
        r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-d", stack.pguri_owner, "-1", "-f", path],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert column_privileges(stack) == before


def test_fields_granted_as_the_field_ciphertexts(stack):
    """waybill.fields_ct (sql/053, stored format version 3): the gateway's role inserts and reads
    it; the 23 *_ct columns of the rows of versions 1 and 2 it only reads (sql/053 took back
    sql/005's INSERT: a version 3 row has none of them); the CLI's role has no grant on any of
    them (it reads and rewrites records through waybill_reseal_take and waybill_reseal alone)."""
    rows = stack.psql("SELECT column_name, grantee, privilege_type "
                      "FROM information_schema.column_privileges WHERE table_name = 'waybill' "
                      "AND column_name LIKE '%\\_ct' "
                      "AND grantee IN ('waygate_gateway', 'waygate_admin')")
    grants = {}
    for row in rows:
        col, who, what = row.split("|")
        grants.setdefault(col, set()).add((who, what))
    assert len(grants) == 24, sorted(grants)  # the 23 fields' columns and fields_ct
    read = {("waygate_gateway", "SELECT")}
    want = {col: read for col in grants}
    want["fields_ct"] = read | {("waygate_gateway", "INSERT")}
    assert grants == want


def superuser_uri(stack, dbname):
    return re.sub(r"user=[^&]*", "user=postgres",
                  stack.pguri_owner.replace("postgresql:///waygate?", "postgresql:///%s?" % dbname))


def test_second_database_gets_its_own_roles_and_owns_its_objects(stack):
    """Roles are cluster-wide: a second database in the same cluster gets <db>_gateway and
    <db>_admin, and even when a superuser runs its migrations, every object ends up the
    database owner's. A login role made beforehand with a dangerous attribute is refused."""
    su = superuser_uri(stack, "postgres")
    stack.psql("CREATE ROLE wgsecond_owner LOGIN CREATEROLE", uri=su)
    stack.psql("CREATE DATABASE wgsecond OWNER wgsecond_owner", uri=su)
    stack.psql("CREATE DATABASE wgbad OWNER wgsecond_owner", uri=su)
    stack.psql("CREATE ROLE wgbad_gateway LOGIN CREATEDB", uri=su)
    try:
        r = stack.ctl("migrate", "--db", superuser_uri(stack, "wgsecond"))
        assert r.returncode == 0, r.stderr
        second = superuser_uri(stack, "wgsecond")
        owners = stack.psql("SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')", uri=second)
        assert owners == ["wgsecond_owner"]
        grantees = stack.psql("SELECT DISTINCT grantee FROM information_schema.column_privileges "
                              "WHERE table_catalog = 'wgsecond' AND grantee LIKE 'wg%' "
                              "AND grantee <> 'wgsecond_owner' ORDER BY 1",
                              uri=second)
        assert grantees == ["wgsecond_admin", "wgsecond_gateway"]
        # waygate's roles have nothing in the second database
        r = as_role(stack.pguri_gateway.replace("///waygate?", "///wgsecond?"), "SELECT 1")
        assert r.returncode != 0
        assert 'FATAL:  permission denied for database "wgsecond"' in r.stderr, r.stderr

        r = stack.ctl("migrate", "--db", superuser_uri(stack, "wgbad"))
        assert r.returncode != 0
        assert "role wgbad_gateway has SUPERUSER, CREATEROLE, CREATEDB" in r.stderr, r.stderr
    finally:
        for sql in ("DROP DATABASE IF EXISTS wgsecond", "DROP DATABASE IF EXISTS wgbad",
                    "DROP ROLE IF EXISTS wgsecond_gateway", "DROP ROLE IF EXISTS wgsecond_admin",
                    "DROP ROLE IF EXISTS wgbad_gateway", "DROP ROLE IF EXISTS wgbad_admin",
                    "DROP ROLE IF EXISTS wgsecond_owner"):
            stack.psql(sql, uri=su)
