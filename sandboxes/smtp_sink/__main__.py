"""Run the SMTP sink: ``python -m sandboxes.smtp_sink --host 127.0.0.1 --smtp-port 1025 --http-port 8025``."""

from __future__ import annotations

import argparse

from sandboxes import serve
from sandboxes.smtp_sink.app import SmtpSinkConfig, create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandboxes.smtp_sink",
        description="SMTP server that keeps every mail, with an HTTP API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface for both ports (default 127.0.0.1)")
    parser.add_argument("--smtp-port", type=int, default=1025, help="SMTP port (default 1025)")
    parser.add_argument("--http-port", type=int, default=8025, help="HTTP API port (default 8025)")
    parser.add_argument("--max-messages", type=int, default=1000, help="oldest mail is dropped beyond this")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    config = SmtpSinkConfig(smtp_host=args.host, smtp_port=args.smtp_port, max_messages=args.max_messages)
    serve(create_app(config), host=args.host, port=args.http_port, log_level=args.log_level)


if __name__ == "__main__":
    main()
