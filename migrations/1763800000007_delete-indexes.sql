-- Up Migration
-- Deletes by version, per table: an INSERT's capture asks whether a delete of
-- its table with a higher version than its own is visible (see
-- sql/capture_rows.sql: an insert that waited at the unique index for a
-- transaction deleting the same key). Partial, so only deletes pay for them:
-- inserts and updates write no entry.
create index outbox_delete on certyo.outbox (table_id, id) where op = 'D';
create index receipt_delete on certyo.receipt (table_id, id) where op = 'D';

-- Down Migration
drop index certyo.receipt_delete;
drop index certyo.outbox_delete;
