"""Parse every real-world mail of tests/mail/corpus/ (sources in corpus/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exobot.mail.parse import MailParseError, parse_mail

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.eml"))
# Share of corpus mails that must yield a non-empty text body.
MIN_BODY_RATE = 0.95


def test_corpus_is_big_enough() -> None:
    assert len(FILES) >= 60


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_mail_never_raises_unexpectedly(path: Path) -> None:
    try:
        parsed = parse_mail(path.read_bytes())
    except MailParseError:
        return
    for values in parsed.headers.values():
        assert all("\r" not in v and "\n" not in v for v in values)


def test_corpus_body_rate() -> None:
    failures = []
    for path in FILES:
        try:
            parsed = parse_mail(path.read_bytes())
        except MailParseError as exc:
            failures.append(f"{path.name}: MailParseError({exc})")
            continue
        if not parsed.body.strip():
            names = [a.filename for a in parsed.attachments]
            failures.append(f"{path.name}: empty body (attachments={names})")
    rate = 1 - len(failures) / len(FILES)
    print(f"corpus: {len(FILES) - len(failures)}/{len(FILES)} with a body ({rate:.1%})")
    assert rate >= MIN_BODY_RATE, f"{rate:.1%} < {MIN_BODY_RATE:.0%}:\n" + "\n".join(failures)
