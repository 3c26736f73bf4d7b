"""The one Jinja2 sandbox used for template prompts, scaffold files and scaffold file names.

Template authors write Jinja; bots only supply variable *values*, which are inserted as data
and never evaluated. The sandbox still assumes the template text may be hostile:

- ``ImmutableSandboxedEnvironment``: no ``_``-prefixed attributes, no mutation of lists or
  dicts, ``str.format`` goes through the sandboxed formatter;
- ``StrictUndefined``: a misspelt name is an error, not an empty string;
- no loader, so ``{% include %}`` / ``{% import %}`` / ``{% extends %}`` cannot read files;
- an explicit, small set of globals (no ``lipsum``) and the default filters (none read files);
- ``*`` and ``**`` are capped so ``{{ 'a' * 10**10 }}`` cannot exhaust memory.

Every failure becomes ``ValidationFailed`` with a message a template author can act on.
"""

from __future__ import annotations

import operator
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace

from rdev.domain.errors import ValidationFailed

#: Largest string/list a template may build with ``*``, and largest exponent of ``**``.
MAX_REPEAT_LENGTH = 100_000
MAX_EXPONENT = 64


class PromptSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox with bounded ``*``/``**``; autoescape off (the output is text)."""

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            loader=None,
        )
        # Replace the default globals: keep only pure helpers.
        self.globals = {
            "range": self.globals["range"],  # the sandbox's bounded range
            "dict": dict,
            "cycler": Cycler,
            "joiner": Joiner,
            "namespace": Namespace,
        }

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * max(times, 0) > MAX_REPEAT_LENGTH
                ):
                    raise SecurityError(
                        f"template tried to build a sequence longer than {MAX_REPEAT_LENGTH}"
                    )
            return operator.mul(left, right)
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"template tried an exponent larger than {MAX_EXPONENT}")
            return operator.pow(left, right)
        return super().call_binop(context, operator_name, left, right)


_SANDBOX = PromptSandbox()


def render(source: str, context: dict[str, Any], *, what: str, field: str | None = None) -> str:
    """Render ``source`` in the sandbox; ``what`` names it in errors (e.g. "prompt template")."""
    try:
        return _SANDBOX.from_string(source).render(context)
    except SecurityError as exc:
        raise ValidationFailed(
            f"{what}: template tried to access an unsafe attribute or operation ({exc})",
            field=field,
        ) from None
    except UndefinedError as exc:
        raise ValidationFailed(f"{what}: undefined value ({exc})", field=field) from None
    except TemplateSyntaxError as exc:
        raise ValidationFailed(
            f"{what}: syntax error on line {exc.lineno}: {exc.message}", field=field
        ) from None
    except TemplateError as exc:
        raise ValidationFailed(f"{what}: render error ({exc})", field=field) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        # Errors raised by the template's own expressions, e.g. {{ 1 / 0 }} or {% include %}
        # without a loader; they carry no secrets, only the template's mistake.
        raise ValidationFailed(
            f"{what}: render error ({type(exc).__name__}: {exc})", field=field
        ) from None
