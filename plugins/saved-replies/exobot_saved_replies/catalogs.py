"""The plugin's gettext catalogs (domain `saved_replies`), managed with Babel like the core's.

    python -m exobot_saved_replies.catalogs update    # extract ids, merge into ca/es/en .po
    python -m exobot_saved_replies.catalogs compile   # write the .mo files (also at build)
    python -m exobot_saved_replies.catalogs check     # what is missing, obsolete or fuzzy

The `.mo` files are never committed: `setup.py` compiles them when the plugin is built or
installed (`pip install -e plugins/saved-replies` too). This module needs only Babel, so the
build hook can load it before exobot is installed.
"""

from __future__ import annotations

import io
import string
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
LOCALE_DIR = PACKAGE / "locale"
DOMAIN = "saved_replies"
LANGUAGES = ("ca", "es", "en")
SOURCE_LANGUAGE = "en"
# The calls whose arguments are message ids: ctx.say(language, msgid), the N_ marker, and
# the templates' _ / ngettext.
KEYWORDS: dict[str, object] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "N_": None,
    "say": (2,),
}


def po_path(language: str) -> Path:
    """Where `language`'s catalog lives."""
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract() -> Catalog:
    """Every message id the plugin uses, as a template catalog."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        methods, options = parse_mapping_cfg(handle)
    template = Catalog(project="exobot-saved-replies", domain=DOMAIN, fuzzy=False)
    found = extract_from_dir(str(ROOT), methods, options, keywords=KEYWORDS)
    for filename, lineno, message, comments, context in found:
        if message:
            template.add(
                message, None, [(filename, lineno)], auto_comments=comments, context=context
            )
    return template


def read(language: str) -> Catalog:
    """One language's `.po`."""
    with po_path(language).open("rb") as handle:
        return read_po(handle, locale=language)


def _write(catalog: Catalog, path: Path) -> None:
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, ignore_obsolete=True, sort_by_file=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def update() -> None:
    """Merge the extracted ids into every language's `.po` (new ones untranslated)."""
    template = extract()
    for language in LANGUAGES:
        path = po_path(language)
        catalog = (
            read(language)
            if path.exists()
            else Catalog(
                locale=language, domain=DOMAIN, project="exobot-saved-replies", fuzzy=False
            )
        )
        catalog.update(template, no_fuzzy_matching=True)
        _write(catalog, path)


def compile_all() -> list[Path]:
    """Write every `.po`'s `.mo` next to it."""
    written = []
    for language in LANGUAGES:
        path = po_path(language)
        if path.exists():
            buffer = io.BytesIO()
            write_mo(buffer, read(language))
            path.with_suffix(".mo").write_bytes(buffer.getvalue())
            written.append(path.with_suffix(".mo"))
    return written


def _placeholders(text: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return {"<unparsable>"}


def problems() -> list[str]:
    """What is wrong with the catalogs against the ids in use (empty: complete)."""
    template = extract()
    wanted = {message.id for message in template if message.id}
    found = []
    for language in LANGUAGES:
        catalog = read(language)
        for message in template:
            if not message.id:
                continue
            entry = catalog.get(message.id)
            if entry is None:
                found.append(f"{language}: missing {message.id!r}")
            elif language != SOURCE_LANGUAGE and (not entry.string or entry.fuzzy):
                found.append(f"{language}: untranslated {message.id!r}")
            elif entry.string and _placeholders(entry.string) != _placeholders(message.id):
                found.append(f"{language}: placeholders differ in {message.id!r}")
        found.extend(
            f"{language}: obsolete {entry.id!r}"
            for entry in catalog
            if entry.id and entry.id not in wanted
        )
    return found


def main(argv: list[str] | None = None) -> int:
    """`python -m exobot_saved_replies.catalogs update|compile|check`."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "compile"
    if command == "update":
        update()
    elif command == "compile":
        for mo in compile_all():
            print(mo.relative_to(ROOT))
    elif command == "check":
        found = problems()
        print("\n".join(found) or "complete")
        return 1 if found else 0
    else:
        print("usage: python -m exobot_saved_replies.catalogs update|compile|check")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
