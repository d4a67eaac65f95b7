-- PostgreSQL's GIN index of the search texts stops using a pending list; SQLite's FTS5 index has
-- nothing alike.
SELECT 1;
