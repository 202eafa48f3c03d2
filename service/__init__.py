"""All of Stockyard's I/O: the API, auth, staging, jobs, the warehouse, settings and the CLI."""

import os

# DuckDB's allocator (its own jemalloc) keeps freed pages for 10 s by default, so a process that staged or
# merged a large body holds that memory while the next one runs beside it. Purged after 1 s instead (by
# the background threads `Settings.duckdb_config` turns on). Read once, when DuckDB first allocates: so
# here, before any module of the service imports duckdb; a value already in the environment wins.
os.environ.setdefault("DUCKDB_JE_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:0")
