"""Jobs: the SQLite store, the engine that launches and refreshes them, the one wait loop, log pages and
the summaries an agent reads."""
