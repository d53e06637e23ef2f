"""Generate the reference pages from the code: ``python -m beatsync.service.docs [DOCS_DIR]``.

``docs/configuration.md`` comes from :class:`~beatsync.service.config.Settings` and
``docs/errors.md`` from :data:`~beatsync.service.codes.CODES`; a test fails when the committed
pages differ from what this prints, so the docs cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from .codes import CODES
from .config import Settings

__all__ = ["configuration_page", "errors_page", "main"]


def configuration_page() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every setting is an environment variable with the `BEATSYNC_` prefix (any case). "
        "`beatsync serve` options override the matching variables. Generated from "
        "`src/beatsync/service/config.py` by `python -m beatsync.service.docs`.",
        "",
        "| Variable | Default | Meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "one per core" if name == "workers" else "(computed)"
        elif field.default is PydanticUndefined:
            default = "(required)"
        elif isinstance(field.default, SecretStr):
            value = field.default.get_secret_value()
            default = "(set)" if value else "(empty)"
        elif field.default in ("", None):
            default = "(empty)"
        else:
            default = f"`{field.default}`"
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `BEATSYNC_{name.upper()}` | {default} | {description} |")
    return "\n".join(lines) + "\n"


def errors_page() -> str:
    lines = [
        "# Error codes",
        "",
        "Every refusal of the API is an RFC 9457 `application/problem+json` document with a "
        "stable `code`, a `message` in zh-CN or en (by `Accept-Language`, zh-CN by default), a "
        "`detail` in English and the `request_id` the server logs carry. Generated from "
        "`src/beatsync/service/codes.py` by `python -m beatsync.service.docs`.",
        "",
        "| Code | HTTP | Retry? | zh-CN | en |",
        "| --- | --- | --- | --- | --- |",
    ]
    for code in CODES.values():
        retry = "yes" if code.retryable else "no"
        lines.append(f"| `{code.code}` | {code.status} | {retry} | {code.zh} | {code.en} |")
    return "\n".join(lines) + "\n"


PAGES = {"configuration.md": configuration_page, "errors.md": errors_page}


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv if argv is not None else sys.argv[1:] or ["docs"])[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, page in PAGES.items():
        (folder / name).write_text(page(), encoding="utf-8")
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
