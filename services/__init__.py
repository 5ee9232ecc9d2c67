"""Domain services: one package per service, each owning exactly one database."""
