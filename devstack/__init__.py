"""The embedded default: everything `make up` and the test fixtures need to run the platform on one
machine (a local PostgreSQL cluster, the Temporal dev server, the worker / API / sandbox processes)."""
