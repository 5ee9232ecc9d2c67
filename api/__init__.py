"""The HTTP edge (FastAPI). Single-service reads/writes call the owning service module; anything that
spans services starts, signals, updates or queries a workflow."""
