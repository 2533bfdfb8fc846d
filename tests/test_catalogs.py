"""The gettext catalogs: complete for every language, consistent with the source, loadable;
and the web never reaches into the chat adapter for its words."""

from __future__ import annotations

import ast
import runpy
import shutil
from pathlib import Path

import pytest
from babel.support import Translations

from exobot import catalogs, i18n
from exobot.core import languages

PACKAGE = Path(catalogs.__file__).parent


@pytest.fixture(scope="module")
def template():
    """Every message id the source and the templates use, extracted now with Babel."""
    return catalogs.extract()


def test_the_language_list_is_declared_once() -> None:
    assert catalogs.LANGUAGES == languages.LANGUAGES
    assert catalogs.SOURCE_LANGUAGE == languages.SOURCE_LANGUAGE


def test_extraction_finds_python_templates_and_the_action_registry(template) -> None:
    ids = {message.id for message in template}
    assert "{actor} took {ticket}" in ids  # the wording (Python)
    assert "Skip to content" in ids  # a Jinja2 template
    assert "!take {ref}" in ids  # the action registry's usage
    assert ("{count} ticket:", "{count} tickets:") in ids  # a plural


@pytest.mark.parametrize("language", catalogs.LANGUAGES)
def test_every_catalog_is_complete_and_current(template, language: str) -> None:
    catalog = catalogs.read(catalogs.po_path(language), language)
    complete = language != catalogs.SOURCE_LANGUAGE  # English ids may stay untranslated
    assert catalogs.problems(catalog, template, complete=complete) == []


def test_a_missing_or_wrong_translation_fails(template, tmp_path: Path) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(PACKAGE / "locale", locale)
    po = catalogs.po_path("ca", locale)
    catalog = catalogs.read(po, "ca")
    catalog["{actor} took {ticket}"].string = ""
    catalog["{actor} assigned {ticket} to {owner}"].string = "{actor} ha assignat {ticket}"
    catalog["Log in"].flags.add("fuzzy")
    catalog.add("A message nobody uses any more", "Un missatge que ja no es fa servir")
    catalogs._write(catalog, po)
    found = catalogs.problems(catalogs.read(po, "ca"), template, complete=True)
    assert "untranslated: '{actor} took {ticket}'" in found
    assert any(problem.startswith("placeholders differ: '{actor} assigned") for problem in found)
    assert "fuzzy: 'Log in'" in found
    assert "obsolete: 'A message nobody uses any more'" in found
    del catalog["Skip to content"]
    catalogs._write(catalog, po)
    assert "missing: 'Skip to content'" in catalogs.problems(
        catalogs.read(po, "ca"), template, complete=True
    )


def test_the_compiled_catalogs_load(tmp_path: Path) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(PACKAGE / "locale", locale, ignore=shutil.ignore_patterns("*.mo"))
    written = catalogs.compile_all(locale)
    assert sorted(mo.parent.parent.name for mo in written) == sorted(catalogs.LANGUAGES)
    for language, expected in (("ca", "obert"), ("es", "abierto"), ("en", "open")):
        loaded = Translations.load(str(locale), [language], catalogs.DOMAIN)
        assert isinstance(loaded, Translations), language  # not a NullTranslations: found
        assert loaded.gettext("open") == expected
        plural = loaded.ngettext("{count} ticket:", "{count} tickets:", 2)
        assert plural == {"ca": "{count} tickets:", "es": "{count} tickets:"}.get(
            language, "{count} tickets:"
        )


def test_the_build_hook_compiles_the_catalogs() -> None:
    # setup.py loads exobot/catalogs.py by path, before exobot's dependencies exist: that
    # loading must work on its own (a wheel or the image is built this way).
    hook = runpy.run_path(str(PACKAGE.parent / "setup.py"), run_name="exobot_build_hook")
    hook["_compile_catalogs"]()
    for language in catalogs.LANGUAGES:
        assert (PACKAGE / "locale" / language / "LC_MESSAGES" / "exobot.mo").stat().st_size > 0


def test_a_plugin_domain_falls_back_to_the_core(tmp_path: Path) -> None:
    from babel.messages.catalog import Catalog

    locale = tmp_path / "locale"
    catalog = Catalog(locale="ca", domain="demo-plugin")
    catalog.add("Saved replies", "Respostes desades")
    path = catalogs.po_path("ca", locale, "demo-plugin")
    catalogs._write(catalog, path)
    catalogs.compile_all(locale, "demo-plugin")
    i18n.add_domain("demo-plugin", locale)
    try:
        assert i18n.say("ca", "Saved replies", domain="demo-plugin") == "Respostes desades"
        assert i18n.say("ca", "open", domain="demo-plugin") == "obert"  # the core's
        with pytest.raises(i18n.MissingTranslation):
            i18n.say("ca", "Not translated anywhere", domain="demo-plugin")
    finally:
        i18n.remove_domain("demo-plugin")
    assert "demo-plugin" not in i18n.domains()


def test_no_web_module_imports_the_chat_adapter() -> None:
    offenders = []
    for path in sorted((PACKAGE / "web").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name == "exobot.matrix" or name.startswith("exobot.matrix.")
            ]
    assert offenders == []
