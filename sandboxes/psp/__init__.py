"""Payment service provider sandbox: ``python -m sandboxes.psp --port 8101 [--state-file PATH]``."""
