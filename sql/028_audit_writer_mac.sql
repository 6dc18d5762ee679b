-- 028_audit_writer_mac: a gateway's audit records carry a MAC only its keyring can make (Art. 33).
--
-- A record's hash uses no secret, so whoever holds the gateway's database role (which inserts
-- records into gateway chains: that is how the gateway writes them) could append a record that
-- links properly at a chain's next seq; the gateway took it for its own head, chained onto it and
-- signed its next checkpoint over it. Now the gateway writes beside each record's hash
-- writer_mac = HMAC(k, hash), k = HMAC(the keyring's audit key of its suite,
-- "waygate-audit-writer-v1") (HMAC-SHA256 under aes, HMAC-SM3 under sm; gateway/store/audit.c),
-- and a head its own key did not sign a checkpoint over must carry that MAC under one of the
-- keyring's audit keys before the gateway links to it. The database never holds the keyring.
--
-- writer_mac is not part of the record's hash nor of an audit bundle: it is the writer's own
-- check of its head, not evidence for a verifier. Records of waygatectl's chain 'ctl' and records
-- stored before this migration have none (NULL). A gateway upgraded after a crash finds its head
-- without a MAC and not signed (a clean stop signs it): it does not link to it but starts a new
-- segment (audit.break, incident audit_head_rejected), as for any head it cannot vouch for.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

ALTER TABLE audit_record ADD COLUMN writer_mac bytea
    CHECK (writer_mac IS NULL OR octet_length(writer_mac) = 32);
COMMENT ON COLUMN audit_record.writer_mac IS
    'HMAC of hash under a key derived from the keyring''s audit key (gateway chains); not hashed.';

DO $writer_mac$
DECLARE
    gw text := current_database() || '_gateway';
BEGIN
    EXECUTE format('GRANT INSERT (writer_mac) ON audit_record TO %I', gw);
END
$writer_mac$;
