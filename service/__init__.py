"""All of Stockyard's I/O: the API, auth, staging, jobs, the warehouse, settings and the CLI."""
