"""Run the PSP sandbox: ``python -m sandboxes.psp --host 127.0.0.1 --port 8101 [--state-file PATH]``.

The webhook signing secret is ``PSP_WEBHOOK_SECRET`` (see ``core.settings``).
"""

from __future__ import annotations

from core.settings import get_settings
from sandboxes import base_arg_parser, serve
from sandboxes.psp.app import DEFAULT_AUTH_TTL_S, PspConfig, create_app


def main(argv: list[str] | None = None) -> None:
    parser = base_arg_parser("python -m sandboxes.psp", "Payment service provider sandbox.", 8101)
    parser.add_argument(
        "--auth-ttl-seconds",
        type=float,
        default=DEFAULT_AUTH_TTL_S,
        help=f"how long an uncaptured authorization lives (default {DEFAULT_AUTH_TTL_S}, 7 days)",
    )
    args = parser.parse_args(argv)
    config = PspConfig(
        webhook_secret=get_settings().psp_webhook_secret,
        auth_ttl_s=args.auth_ttl_seconds,
        state_file=args.state_file,
        webhook_max_attempts=args.webhook_max_attempts,
        webhook_backoff_s=args.webhook_backoff_ms / 1000,
    )
    serve(create_app(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
