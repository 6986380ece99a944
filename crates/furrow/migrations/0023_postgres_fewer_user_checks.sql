-- PostgreSQL only
-- Two foreign keys that a cascade already covers: an operation's processing record goes with
-- its operation, and an operation with its field, whose own key to its user remains. On
-- PostgreSQL each row inserted checked its user's row and locked it (FOR KEY SHARE), one lock
-- per row for the same user: 16 µs a row alone, and a quarter of an 80-row insert's
-- throughput with four of a grower's transactions at once; a first sync inserts both rows for
-- every operation. SQLite (which cannot drop a constraint without rebuilding its table, and
-- checks a key in-process) keeps them.
ALTER TABLE operation_data DROP CONSTRAINT IF EXISTS operation_data_leaf_user_id_fkey;
ALTER TABLE operations DROP CONSTRAINT IF EXISTS operations_leaf_user_id_fkey
