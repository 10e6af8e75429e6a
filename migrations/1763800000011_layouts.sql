-- Up Migration
-- The column layout each delivered version was rendered with: its payload's
-- columns in order (names as sent, and the column number and type each had
-- when the layout was first seen). The tamper sweep renders a row in its
-- anchored version's layout, so ADD, RENAME and type changes that keep the
-- rendering do not make unchanged rows look changed.
create table certyo.layout (
    layout_id integer generated always as identity primary key,
    table_id integer not null,
    names text[] not null,
    -- NULL where a name did not resolve (renamed again before it was first seen).
    attnums smallint[] not null,
    types text[] not null,
    first_seen timestamptz not null default pg_catalog.now(),
    constraint layout_columns unique (table_id, names, attnums, types)
);
alter table certyo.receipt add column layout_id integer;

-- Down Migration
alter table certyo.receipt drop column layout_id;
drop table certyo.layout;
