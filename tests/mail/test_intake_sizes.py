"""Intake's size check: sizes read from the server's answer, and fetch groups that never
download a mail over the limit and stay bounded in count and bytes."""

from __future__ import annotations

from exobot.mail.intake import FETCH_BYTES, FETCH_CHUNK, HEADER_BYTES, fetch_groups, parse_sizes

MB = 1024 * 1024


def test_sizes_are_read_whatever_the_order_of_the_items():
    lines = [
        b"1 FETCH (UID 7 RFC822.SIZE 1234)",
        b"2 FETCH (RFC822.SIZE 99999999 UID 8)",
        b"3 FETCH (FLAGS (\\Seen))",
        b"UID FETCH completed",
    ]
    assert parse_sizes(lines) == {7: 1234, 8: 99999999}


def test_big_mails_are_fetched_as_headers_and_groups_keep_uid_order():
    sizes = {1: 1000, 2: 30 * MB, 3: 2000, 4: 25 * MB}
    assert fetch_groups([1, 2, 3, 4, 5], sizes, 25 * MB) == [([1, 3, 4, 5], [2])]


def test_groups_are_bounded_in_count_and_bytes():
    uids = list(range(1, 2 * FETCH_CHUNK + 2))
    groups = fetch_groups(uids, dict.fromkeys(uids, 100), 25 * MB)
    assert [len(whole) for whole, _big in groups] == [FETCH_CHUNK, FETCH_CHUNK, 1]
    heavy = {1: 20 * MB, 2: 20 * MB, 3: 20 * MB, 4: 20 * MB}
    groups = fetch_groups([1, 2, 3, 4], heavy, 25 * MB)
    assert all(sum(heavy[u] for u in whole) <= FETCH_BYTES for whole, _big in groups)
    assert [u for whole, _big in groups for u in whole] == [1, 2, 3, 4]
    assert HEADER_BYTES < 25 * MB
