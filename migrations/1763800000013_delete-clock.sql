-- Up Migration
-- A count of captured deletes, advanced after each delete's version is drawn.
-- An insert's capture probes the outbox and the receipts for a later delete of
-- its table (restamp_inserts) only when this clock moved since its session
-- last looked: a probe was a fifth of a single-row insert's cost.
create sequence certyo.delete_clock as bigint cache 1;

-- Down Migration
drop sequence certyo.delete_clock;
