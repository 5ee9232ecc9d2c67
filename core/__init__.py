"""Cross-cutting plumbing shared by every process: settings, database sessions, Temporal client."""
