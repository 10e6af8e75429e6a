-- Up Migration
-- outbox_record (table_id, record_id, id) served a claim that looked for an
-- earlier change of the same record; the claim has since found held records
-- another way (leased_upto and outbox_parked, migration 4), and no query uses
-- the index any more (the backlog view scans the outbox either way). It was
-- the outbox's largest index: every captured change inserted an entry
-- (a text key), and every vacuum of the outbox read all of it. Without it a
-- drain costs PostgreSQL 4-8% less CPU per change; writers are unchanged
-- within pgbench's noise.
drop index certyo.outbox_record;

-- Down Migration
create index outbox_record on certyo.outbox (table_id, record_id, id);
