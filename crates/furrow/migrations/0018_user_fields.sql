-- Fields a user creates in furrow (Leaf's "create a field"), beside the fields synced from
-- John Deere: `origin` says which. A user's field has no organization until it is written back
-- to John Deere; then it carries John Deere's organization and field id, and the sync reads
-- that field into it instead of creating a second one.
ALTER TABLE fields ADD COLUMN origin TEXT NOT NULL DEFAULT 'JohnDeere';
