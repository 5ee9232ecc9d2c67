"""SMTP sink: ``python -m sandboxes.smtp_sink --smtp-port 1025 --http-port 8025``."""
