-- Up Migration
-- Verification state. Per receipt: our digest of the payload Certyo received
-- (what the tamper sweep compares a row with), where checking the anchoring
-- stands, and what proves it. Per Merkle root: where it is on chain.

create table certyo.anchor (
    merkle_root text primary key,
    batch_id text,
    polygon_tx_hash text,
    block_number bigint,
    ipfs_cid text,
    anchored_at timestamptz,
    first_seen_at timestamptz not null default pg_catalog.now()
);

alter table certyo.receipt
    -- SHA-256 of the recordPayload text exactly as sent.
    add column payload_digest bytea,
    add column anchor_status text not null default 'submitted'
        constraint receipt_anchor_status check (anchor_status in ('submitted', 'anchored', 'anchor_failed', 'mismatch')),
    add column checks integer not null default 0,
    -- When the verifier looks at this receipt next; null once nothing is left to do.
    add column next_check_at timestamptz default pg_catalog.now(),
    add column lease_token uuid,
    add column lease_until timestamptz,
    add column merkle_root text,
    -- Proof steps, 33 bytes each: position (0 left, 1 right), sibling hash.
    add column merkle_proof bytea,
    add column verified_at timestamptz,
    add column detail text;

create index receipt_due on certyo.receipt (next_check_at) where next_check_at is not null;

-- Down Migration
drop index certyo.receipt_due;
alter table certyo.receipt
    drop column payload_digest, drop column anchor_status, drop column checks, drop column next_check_at,
    drop column lease_token, drop column lease_until, drop column merkle_root, drop column merkle_proof,
    drop column verified_at, drop column detail;
drop table certyo.anchor;
