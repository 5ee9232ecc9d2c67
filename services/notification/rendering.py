"""Rendering email templates: Jinja2 in a sandboxed environment with ``StrictUndefined``.

A missing variable is a :class:`TemplateRenderError` naming it, never an empty string in a mail.
HTML bodies are autoescaped; subject and text are not (they are not HTML), and the subject is folded
to one line (no header injection through a context value).

Filters: ``money(amount, currency)`` formats minor units (``1999 | money("USD")`` -> ``$19.99``),
``date`` formats a datetime or ISO 8601 string (``March 3, 2026``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from services.notification.errors import TemplateInvalid, TemplateRenderError

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF"})


def money(amount: int, currency: str) -> str:
    """Minor units as a price: ``money(123456, "USD")`` -> ``$1,234.56``; unknown symbols -> ``1,234.56 CHF``."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"money() needs an integer amount in minor units, got {amount!r}")
    code = str(currency).upper()
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    number = f"{value:,}" if code in ZERO_DECIMAL else f"{value // 100:,}.{value % 100:02d}"
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"


def format_date(value: datetime | date | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return f"{value:%B} {value.day}, {value.year}"


MAX_EXPONENT = 64  # ``**`` beyond this (``{{ 9**9**9 }}``) would tie up a worker: refused


class _Sandbox(SandboxedEnvironment):
    """The sandbox with ``**`` intercepted: small powers only (no constant folding of it at compile
    time either, which is where an unbounded power would hang)."""

    intercepted_binops = frozenset(["**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
            if not numbers or abs(right) > MAX_EXPONENT or abs(left) > 2**64:
                raise SecurityError(f"the power {left!r} ** {right!r} is not allowed in a template")
        return super().call_binop(context, operator, left, right)


def _environment(*, autoescape: bool) -> SandboxedEnvironment:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = money
    env.filters["date"] = format_date
    return env


PLAIN = _environment(autoescape=False)
HTML = _environment(autoescape=True)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None


def check_compiles(name: str, source: str, *, html: bool = False) -> None:
    """Raise ``TemplateInvalid`` unless ``source`` compiles (syntax, known filters)."""
    try:
        (HTML if html else PLAIN).from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(
            f"{name}: line {exc.lineno}: {exc.message}", part=name, line=exc.lineno
        ) from exc
    except TemplateError as exc:
        raise TemplateInvalid(f"{name}: {exc}", part=name) from exc


@functools.lru_cache(maxsize=512)
def _compiled(html: bool, source: str) -> Template:
    """Compiling costs far more than rendering: a stored template is compiled once per process
    (keyed by its text, so an edited template is compiled afresh)."""
    return (HTML if html else PLAIN).from_string(source)


def _render(env: SandboxedEnvironment, label: str, source: str, context: dict[str, Any]) -> str:
    try:
        return _compiled(env is HTML, source).render(context)
    except TemplateError as exc:  # UndefinedError, SecurityError, syntax errors of a stored template
        raise TemplateRenderError(f"{label}: {exc.message or exc}", template=label) from exc
    except (TypeError, ValueError, ArithmeticError) as exc:  # a filter given the wrong kind of value, 1/0
        raise TemplateRenderError(f"{label}: {exc}", template=label) from exc


def render(*, name: str, subject: str, text: str, html: str | None, context: dict[str, Any]) -> RenderedEmail:
    rendered_subject = " ".join(_render(PLAIN, f"{name} subject", subject, context).split())
    return RenderedEmail(
        subject=rendered_subject,
        text=_render(PLAIN, f"{name} text", text, context),
        html=_render(HTML, f"{name} html", html, context) if html is not None else None,
    )
