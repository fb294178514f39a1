"""The search: spaces, study configs, storage, the DB-backed Ray Tune searcher, the runner."""
