-- Up Migration
-- Status write-backs that a user's transaction made the relay skip (it held
-- the row): the receipt says when to write its status into the row again
-- (certyo.write_due), so a row is never left 'pending' once Certyo has its
-- version, whether or not verification runs.
alter table certyo.receipt add column write_due_at timestamptz;
create index receipt_write_due on certyo.receipt (write_due_at) where write_due_at is not null;

-- Down Migration
drop index certyo.receipt_write_due;
alter table certyo.receipt drop column write_due_at;
