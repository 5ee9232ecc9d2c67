"""Shipping carrier sandbox: ``python -m sandboxes.carrier --port 8102 [--state-file PATH]``."""
