-- Up Migration
-- What the tamper sweep found about a delivered version whose row has no
-- place to carry a flag: 'deleted' (the row is gone, no delete was captured).
alter table certyo.receipt add column finding text, add column found_at timestamptz;

-- Down Migration
alter table certyo.receipt drop column finding, drop column found_at;
