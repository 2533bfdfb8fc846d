"""The gettext catalogs' life cycle, with Babel: extract, update, check and compile.

`make catalogs` runs `python -m exobot.catalogs update` (extract the message ids from the
source and the templates into `exobot.pot`, merge them into every language's `.po`) after
strings change; `python -m exobot.catalogs compile` (every `make` target, and the package's
build hook) writes the `.mo` files, which are never committed; `… check` lists what is
missing. A plugin's own domain is handled the same way with `--plugin plugins/NAME`. The test
suite uses `extract`, `problems` and `check` to prove the catalogs complete.

This module imports nothing from exobot (the build hook loads it by path, before exobot's
dependencies are installed) and only Babel.
"""

from __future__ import annotations

import io
import string
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
LOCALE_DIR = PACKAGE / "locale"
DOMAIN = "exobot"
LANGUAGES = ("ca", "es", "en")  # as exobot.core.languages.LANGUAGES (a test checks it)
SOURCE_LANGUAGE = "en"

#: The functions whose arguments are message ids (Babel's keyword specs).
KEYWORDS: dict[str, object] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
    "N_": None,
    "ngettext_noop": (1, 2),
    "say": (2,),
    "say_plural": (2, 3),
    "_t": None,
    "_say": None,
    "_nt": (1, 2),
}


HEADER = """\
# exobot's messages ({language}): what the support team reads in chat and on the web.
# Message ids are the English texts; placeholders in braces ({{name}}) stay as they are.
# Update with `make catalogs`; the .mo files are compiled at build and never committed.
#"""


@dataclass(frozen=True)
class Domain:
    """One gettext domain's files: the folder its ids are extracted from (with the `babel.cfg`
    there) and the `locale/` folder of its catalogs."""

    name: str
    source: Path
    locale_dir: Path
    project: str


CORE = Domain(DOMAIN, ROOT, LOCALE_DIR, "exobot")


def plugin_domain(folder: Path) -> Domain:
    """The domain of the plugin distribution in `folder` (`plugins/NAME`, with its `babel.cfg`
    and one package holding `locale/`): named after the plugin, `-` → `_`."""
    folder = folder.resolve()
    found = sorted(folder.glob("*/locale"))
    if len(found) != 1 or not (folder / "babel.cfg").exists():
        raise ValueError(f"{folder} is not a plugin with one package/locale and a babel.cfg")
    return Domain(folder.name.replace("-", "_"), folder, found[0], f"exobot-{folder.name}")


def new_catalog(language: str | None, domain: Domain = CORE) -> Catalog:
    """An empty catalog with exobot's header (a template when `language` is None)."""
    return Catalog(
        locale=language,
        domain=domain.name,
        project=domain.project,
        version="0.1",
        copyright_holder="eXO",
        header_comment=HEADER.format(language=language or "template"),
        fuzzy=False,
    )


def method_map(cfg: Path | None = None) -> tuple[list[tuple[str, str]], dict[str, dict]]:
    """The extraction methods of `babel.cfg` (Python sources, Jinja2 templates)."""
    cfg = cfg or ROOT / "babel.cfg"
    with cfg.open(encoding="utf-8") as handle:
        return parse_mapping_cfg(handle)


def extract(
    source: Path | None = None, cfg: Path | None = None, domain: Domain = CORE
) -> Catalog:
    """Every message id used under `source` (by default the domain's folder), as a template
    catalog."""
    source = source or domain.source
    methods, options = method_map(cfg or domain.source / "babel.cfg")
    template = new_catalog(None, domain)
    for filename, lineno, message, comments, context in extract_from_dir(
        str(source), methods, options, keywords=KEYWORDS
    ):
        if isinstance(message, tuple) and not all(message):
            message = tuple(part for part in message if part) or ""
            if isinstance(message, tuple) and len(message) == 1:
                message = message[0]
        if not message:
            continue
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def _write(catalog: Catalog, path: Path) -> None:
    for message in catalog:
        # A hand-written "#: file" reads back without a line, which Babel cannot sort.
        message.locations = [(name, line or 0) for name, line in message.locations]
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, ignore_obsolete=True, sort_by_file=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def po_path(language: str, locale_dir: Path = LOCALE_DIR, domain: str = DOMAIN) -> Path:
    """Where `language`'s catalog lives."""
    return locale_dir / language / "LC_MESSAGES" / f"{domain}.po"


def read(path: Path, language: str) -> Catalog:
    """A `.po` file."""
    with path.open("rb") as handle:
        return read_po(handle, locale=language)


def update(domain: Domain = CORE) -> None:
    """Extract into `DOMAIN.pot` and merge into every language's `.po` (new ids untranslated,
    vanished ones dropped)."""
    template = extract(domain=domain)
    _write(template, domain.locale_dir / f"{domain.name}.pot")
    for language in LANGUAGES:
        path = po_path(language, domain.locale_dir, domain.name)
        catalog = read(path, language) if path.exists() else new_catalog(language, domain)
        catalog.update(template, no_fuzzy_matching=True)
        _write(catalog, path)


def compile_all(locale_dir: Path = LOCALE_DIR, domain: str = DOMAIN) -> list[Path]:
    """Write `LANG/LC_MESSAGES/DOMAIN.mo` next to every `.po` under `locale_dir`."""
    written = []
    for po in sorted(locale_dir.glob(f"*/LC_MESSAGES/{domain}.po")):
        language = po.parent.parent.name
        catalog = read(po, language)
        mo = po.with_suffix(".mo")
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        mo.write_bytes(buffer.getvalue())  # always: its time tells make it is up to date
        written.append(mo)
    return written


def placeholders(text: str) -> set[str]:
    """The `{name}` placeholders of a message."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return {"<unparsable>"}


def _forms(value: object) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(form) for form in value]
    return [str(value or "")]


def problems(catalog: Catalog, template: Catalog, *, complete: bool) -> list[str]:
    """What is wrong with one language's catalog against the ids in use: missing ids,
    obsolete ones, and (when it must be `complete`) empty or fuzzy translations and
    placeholders that differ from the id's."""
    found: list[str] = []
    wanted = {(message.id if isinstance(message.id, str) else message.id[0], message.context)
              for message in template if message.id}
    for message in template:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        entry = catalog.get(message.id, context=message.context)
        if entry is None:
            found.append(f"missing: {key!r}")
            continue
        if isinstance(message.id, tuple) != isinstance(entry.id, tuple):
            found.append(f"plural form differs: {key!r}")
            continue
        if not complete:
            continue
        if entry.fuzzy:
            found.append(f"fuzzy: {key!r}")
        forms = _forms(entry.string)
        if not all(forms):
            found.append(f"untranslated: {key!r}")
            continue
        ids = _forms(message.id)
        expected = set().union(*(placeholders(form) for form in ids))
        for form in forms:
            if placeholders(form) != expected and not (
                len(ids) > 1 and placeholders(form) == expected - {"count"}
            ):
                found.append(f"placeholders differ: {key!r} → {form!r}")
    for entry in catalog:
        if not entry.id:
            continue
        key = entry.id if isinstance(entry.id, str) else entry.id[0]
        if (key, entry.context) not in wanted:
            found.append(f"obsolete: {key!r}")
    found.extend(f"obsolete: {key!r}" for key in catalog.obsolete)
    return found


def check(domain: Domain = CORE) -> list[str]:
    """Every problem of the domain's catalogs against the ids its source uses, each line
    starting with its language (empty: complete; English may leave ids untranslated)."""
    template = extract(domain=domain)
    found = []
    for language in LANGUAGES:
        path = po_path(language, domain.locale_dir, domain.name)
        if not path.exists():
            found.append(f"{language}: no catalog at {path}")
            continue
        catalog = read(path, language)
        complete = language != SOURCE_LANGUAGE
        found.extend(
            f"{language}: {problem}"
            for problem in problems(catalog, template, complete=complete)
        )
    return found


USAGE = "usage: python -m exobot.catalogs [--plugin plugins/NAME] update|compile|check"


def main(argv: Iterable[str] | None = None) -> int:
    """`python -m exobot.catalogs [--plugin plugins/NAME] update|compile|check`."""
    args = list(sys.argv[1:] if argv is None else argv)
    domain = CORE
    if args[:1] == ["--plugin"] and len(args) >= 2:
        try:
            domain = plugin_domain(Path(args[1]))
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
        args = args[2:]
    command = args[0] if args else "compile"
    if command == "update":
        update(domain)
        return 0
    if command == "compile":
        for mo in compile_all(domain.locale_dir, domain.name):
            print(mo)
        return 0
    if command == "check":
        found = check(domain)
        print("\n".join(found) or "complete")
        return 1 if found else 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
