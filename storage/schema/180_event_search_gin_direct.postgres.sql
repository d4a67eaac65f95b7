-- The text index takes each row into its tree as it is inserted. With GIN's default fast update,
-- rows wait in a pending list until a VACUUM (or the list reaching gin_pending_list_limit) merges
-- them, and every search reads the whole list: on a server where autovacuum is off or behind, the
-- entire index sat in it, searches cost more than a scan of the table, and the planner chose to
-- scan every row of the searcher's rooms. Indexing happens after commit, in batches, so the
-- slower insert costs no request any time.
ALTER INDEX event_search_vector SET (fastupdate = off);
SELECT gin_clean_pending_list('event_search_vector'::regclass);
