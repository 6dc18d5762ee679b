-- 058_outbox_vacuumed_by_count: autovacuum clears the outbox after a fixed number of dead rows, not
-- a share of the table (issue 9). Every delivery is inserted and, once acknowledged, deleted: at
-- Submit's pace thousands of rows a second die while a few hundred live. PostgreSQL's default
-- trigger (50 rows plus 20% of the live ones) is met at every autovacuum pass, but with passes a
-- minute apart (autovacuum_naptime's default) nothing reuses the pages in between: the outbox grew
-- to 51-80 MiB for a few hundred live rows in a benchmark call of Submit at 64 streams (three
-- rounds of 10 s, or one of 40 s), each insert extending the table. With passes every 5 s and
-- these settings it stayed at 15 MiB at most (docs/performance.md, issue 9's thirteenth round).
-- The pass itself is unthrottled (cost delay 0): the outbox is small when it is cleared often,
-- and a throttled pass lags the deletes. How often passes come is the cluster's
-- autovacuum_naptime, not a table's setting: docs/operations.md ("Forwarding to the carrier
-- backend") asks for 5 s on the gateway's cluster, and deploy/devstack sets it.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                        autovacuum_vacuum_cost_delay = 0);
