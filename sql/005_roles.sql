-- 005_roles: least privilege (Art. 34). Three roles per database D:
--   owner       the database's owner: owns every object, runs the migrations, nothing else;
--   D_gateway   waygated: stores and reads waybills, reads segments, records incidents;
--   D_admin     waygatectl: segments issue/list, keys rewrap/status/retire, suspicious list.
-- Role names are cluster-wide in PostgreSQL, so the two login roles are named after the database
-- (a second Waygate database in the same cluster gets its own pair). The roles are created
-- here when missing (the owner then needs CREATEROLE) or may be created beforehand by the DBA
-- (LOGIN, no password in any file: peer/trust on the socket, or a passfile). Whatever exists is
-- checked, and every grant is first revoked and then given again, so the file is idempotent.
-- Each later migration that adds a table or column grants what the two roles need of it.
-- Applied in one transaction by `waygatectl migrate`: no transaction control.

DO $roles$
DECLARE
    db     text := current_database();
    owner  name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                     WHERE datname = current_database());
    gw     text := current_database() || '_gateway';
    adm    text := current_database() || '_admin';
    r      text;
    t      text;
BEGIN
    IF octet_length(adm) > 63 OR octet_length(gw) > 63 THEN
        RAISE EXCEPTION 'database name "%" is too long for its role names (%_gateway)', db, db;
    END IF;
    FOREACH r IN ARRAY ARRAY[gw, adm] LOOP
        IF r = owner THEN
            RAISE EXCEPTION 'role % owns the database: the owner must be a role of its own', r;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT '
                           'NOREPLICATION NOBYPASSRLS', r);
        END IF;
        -- a role made beforehand must be as weak as one made here
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r
                      AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication
                           OR rolbypassrls)) THEN
            RAISE EXCEPTION 'role % has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or '
                            'BYPASSRLS: it must have none of them', r;
        END IF;
        IF pg_has_role(r, owner, 'USAGE') OR pg_has_role(r, owner, 'MEMBER') THEN
            RAISE EXCEPTION 'role % is a member of the owner role %: it must not be', r, owner;
        END IF;
    END LOOP;

    -- Every object belongs to the owner, also when a superuser ran the earlier migrations
    -- (owned sequences follow their table).
    FOREACH t IN ARRAY ARRAY['schema_migrations', 'incident', 'segment', 'waybill',
                             'phone_owner', 'phone_sender'] LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO %I', t, owner);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, %I, %I', t, gw, adm);
    END LOOP;
    EXECUTE format('ALTER FUNCTION waybill_phone_owner_trg() OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON SEQUENCE incident_id_seq, segment_id_seq FROM PUBLIC, %I, %I',
                   gw, adm);

    -- Connect to this database, use its schema, create nothing (no temporary tables either).
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC, %I, %I', db, gw, adm);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I', db, gw, adm);
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, %I, %I', current_schema(), gw, adm);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I, %I', current_schema(), gw, adm);

    -- The suspicious-customer register is kept by the trigger alone: it runs as the owner, so
    -- neither login role needs (or has) any privilege on phone_owner or phone_sender.
    EXECUTE format('ALTER FUNCTION waybill_phone_owner_trg() SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
    REVOKE ALL ON FUNCTION waybill_phone_owner_trg() FROM PUBLIC;

    -- waygated (gateway/store/store_group.c, store_read.c, incident.c): the group insert (every
    -- column, accepted_at and the record MAC included, since the gateway stamps and seals them),
    -- reads by blind index, the segments, incidents (with their count and the gateway's first and
    -- last occurrence; occurred_at and the report columns keep their defaults, so no incident can
    -- be back-dated). No UPDATE, DELETE, TRUNCATE anywhere.
    EXECUTE format('GRANT INSERT (id, wb_bidx, origin_branch, submitted_by, dest_region_code, '
        'weight_grams, service_type, security_level, pickup_day, accepted_at, kek_version, '
        'dek_version, dek_wrapped, content_mac, mac_version, record_mac, sender_phone_bidx, '
        'recipient_phone_bidx, sender_id_bidx, recipient_id_bidx, waybill_no_ct, item_description_ct, pickup_time_ct, sender_name_ct, '
        'sender_phone_ct, sender_province_ct, sender_city_ct, sender_district_ct, '
        'sender_address_detail_ct, sender_company_ct, sender_id_type_ct, sender_id_number_ct, '
        'sender_gender_ct, recipient_name_ct, recipient_phone_ct, recipient_province_ct, '
        'recipient_city_ct, recipient_district_ct, recipient_address_detail_ct, '
        'recipient_company_ct, recipient_id_type_ct, recipient_id_number_ct, recipient_gender_ct) '
        'ON waybill TO %I', gw);
    EXECUTE format('GRANT SELECT (id, wb_bidx, origin_branch, submitted_by, dest_region_code, '
        'weight_grams, service_type, security_level, pickup_day, accepted_at, kek_version, '
        'dek_version, dek_wrapped, content_mac, mac_version, record_mac, sender_phone_bidx, '
        'recipient_phone_bidx, sender_id_bidx, recipient_id_bidx, waybill_no_ct, item_description_ct, pickup_time_ct, '
        'sender_name_ct, sender_phone_ct, sender_province_ct, sender_city_ct, sender_district_ct, '
        'sender_address_detail_ct, sender_company_ct, sender_id_type_ct, sender_id_number_ct, '
        'sender_gender_ct, recipient_name_ct, recipient_phone_ct, recipient_province_ct, '
        'recipient_city_ct, recipient_district_ct, recipient_address_detail_ct, '
        'recipient_company_ct, recipient_id_type_ct, recipient_id_number_ct, recipient_gender_ct) '
        'ON waybill TO %I', gw);
    EXECUTE format('GRANT SELECT (branch, prefix, range_from, range_to) ON segment TO %I', gw);
    EXECUTE format('GRANT INSERT (severity, kind, principal, peer, branch, detail, record_id, '
                   'count, first_occurred_at, last_occurred_at) ON incident TO %I', gw);
    EXECUTE format('GRANT USAGE ON SEQUENCE incident_id_seq TO %I', gw);

    -- waygatectl (gateway/store/store_admin.c): issue and list segments; re-wrap data keys (read the
    -- wrapped key, write it and its KEK version, nothing else of a waybill); read the
    -- suspicious-customer register. Incidents: nothing.
    EXECUTE format('GRANT INSERT (branch, prefix, range_from, range_to, issued_by) '
                   'ON segment TO %I', adm);
    EXECUTE format('GRANT SELECT (id, branch, prefix, range_from, range_to, issued_at, '
                   'issued_by) ON segment TO %I', adm);
    EXECUTE format('GRANT USAGE ON SEQUENCE segment_id_seq TO %I', adm);
    EXECUTE format('GRANT SELECT (id, kek_version, dek_wrapped) ON waybill TO %I', adm);
    EXECUTE format('GRANT UPDATE (kek_version, dek_wrapped) ON waybill TO %I', adm);
    EXECUTE format('GRANT SELECT (phone_bidx, senders, suspicious, flagged_at) '
                   'ON phone_owner TO %I', adm);
    EXECUTE format('GRANT SELECT (phone_bidx, first_record, first_seen) ON phone_sender TO %I',
                   adm);
END
$roles$;
