"""Temporal activities: ``activities/<svc>.py`` adapts ``services/<svc>`` to its task queue ``<svc>``."""
