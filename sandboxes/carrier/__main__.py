"""Run the carrier sandbox: ``python -m sandboxes.carrier --host 127.0.0.1 --port 8102 [--state-file PATH]``.

The webhook signing secret is ``CARRIER_WEBHOOK_SECRET`` (see ``core.settings``).
"""

from __future__ import annotations

from core.settings import get_settings
from sandboxes import base_arg_parser, serve
from sandboxes.carrier.app import CarrierConfig, create_app, default_warehouse
from sandboxes.carrier.state import Address


def main(argv: list[str] | None = None) -> None:
    parser = base_arg_parser("python -m sandboxes.carrier", "Shipping carrier sandbox.", 8102)
    warehouse = default_warehouse()
    parser.add_argument("--currency", default="USD", help="currency of the rates (default USD)")
    parser.add_argument(
        "--warehouse-country",
        default=warehouse.country,
        help=f"default origin of labels (default {warehouse.country})",
    )
    parser.add_argument(
        "--warehouse-postal-code",
        default=warehouse.postal_code,
        help=f"default origin of labels (default {warehouse.postal_code})",
    )
    args = parser.parse_args(argv)
    warehouse = Address.model_validate(
        {
            **warehouse.model_dump(),
            "country": args.warehouse_country,
            "postal_code": args.warehouse_postal_code,
        }
    )
    config = CarrierConfig(
        webhook_secret=get_settings().carrier_webhook_secret,
        currency=args.currency,
        warehouse=warehouse,
        state_file=args.state_file,
        webhook_max_attempts=args.webhook_max_attempts,
        webhook_backoff_s=args.webhook_backoff_ms / 1000,
    )
    serve(create_app(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
