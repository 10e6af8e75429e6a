-- Up Migration
-- The payload of a delivered version whose acceptance carried no record hash
-- (a bulk 202 without per-record results, as Certyo's documentation allows):
-- verification then asks Certyo about the payload itself (POST
-- /api/v1/verify/record), so it is kept until the version is verified, and
-- cleared then. NULL for the usual receipt, which has Certyo's hash.
alter table certyo.receipt add column payload json;

-- Down Migration
alter table certyo.receipt drop column payload;
