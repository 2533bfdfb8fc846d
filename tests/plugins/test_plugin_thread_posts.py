"""Plugins post into chat through `PluginContext.post_to_thread` / `post_to_room`, on the real
stack (Synapse, the bot, the outbox): a text note and a PNG land in the ticket's thread, in an
unencrypted and in an encrypted queue room; the volunteer's client downloads the image (and
decrypts it in the encrypted room) and gets exactly the bytes posted; HTML is escaped and pings
nobody."""

from __future__ import annotations

import io

import pytest
from harness import member_mail, unique
from matrix_harness import body_of, sender_of, thread_root_of
from nio import MemoryDownloadResponse
from nio.crypto.attachments import decrypt_attachment

pytestmark = pytest.mark.integration


def _png(width: int, height: int) -> bytes:
    """A real PNG of the given pixel size (matplotlib's Agg, as the plugins draw)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    figure.add_subplot().plot([0, 1, 2], [3, 1, 2], color="tab:green")
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    return out.getvalue()


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_a_plugin_posts_text_and_an_image_into_the_thread(
    encrypted, sample_installed, make_plugin_instance, matrix_setup, volunteer
):
    setup = matrix_setup(encrypted={"suport"} if encrypted else set())
    inst = make_plugin_instance({"sample": {}}, matrix=setup)
    app = await inst.start()
    ctx = app.plugins.context("sample")
    assert ctx is not None, app.plugins.disabled
    vol = await volunteer(setup)
    room = setup.rooms["suport"]
    await vol.wait_member(room, setup.bot_user_id)

    subject = unique("Sense connexió")
    await inst.send(member_mail(unique("membre"), inst.address, subject=subject))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    root = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and subject in (body_of(e) or ""),
        what="the ticket's root",
    )
    root_id = root["event_id"]

    def from_bot_in_thread(e: dict) -> bool:
        return sender_of(e) == setup.bot_user_id and thread_root_of(e) == root_id

    # A text note: plain, in the thread, escaped, mentioning nobody.
    mark = vol.mark(room)
    note = "pèrdua a 10.1.2.3: <b>@room</b> 35 %\nsegona línia & més"
    await ctx.post_to_thread(number, note)
    posted = await vol.wait_for(
        room,
        lambda e: from_bot_in_thread(e) and "10.1.2.3" in (body_of(e) or ""),
        after=mark,
        what="the plugin's note in the thread",
    )
    content = posted["content"]
    assert content["body"] == note
    assert content["m.mentions"] == {}
    assert "<b>" not in content["formatted_body"]
    assert "&lt;b&gt;@room&lt;/b&gt;" in content["formatted_body"]
    assert "segona línia &amp; més" in content["formatted_body"]
    if encrypted:
        assert vol.wire_type(posted["event_id"]) == "m.room.encrypted"

    # An image with its caption: the client gets exactly the bytes.
    image = _png(320, 200)
    mark = vol.mark(room)
    caption = "Gràfic de 10.1.2.3 <i>@room</i>"
    await ctx.post_to_thread(number, caption, image=image, filename="g.png", width=320, height=200)
    shown = await vol.wait_for(
        room,
        lambda e: from_bot_in_thread(e) and (e.get("content") or {}).get("msgtype") == "m.image",
        after=mark,
        what="the plugin's image in the thread",
    )
    content = shown["content"]
    assert content["body"] == caption and content["filename"] == "g.png"
    assert content["info"] == {"mimetype": "image/png", "size": len(image), "w": 320, "h": 200}
    assert content["m.mentions"] == {}
    assert "&lt;i&gt;@room&lt;/i&gt;" in content["formatted_body"]
    if encrypted:
        assert vol.wire_type(shown["event_id"]) == "m.room.encrypted"
        assert "url" not in content
        file = content["file"]
        downloaded = await vol.client.download(file["url"])
        assert isinstance(downloaded, MemoryDownloadResponse), downloaded
        assert downloaded.body != image  # the homeserver holds ciphertext only
        plain = decrypt_attachment(
            downloaded.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"]
        )
        assert plain == image
    else:
        assert "file" not in content
        downloaded = await vol.client.download(content["url"])
        assert isinstance(downloaded, MemoryDownloadResponse), downloaded
        assert downloaded.body == image

    # Each row was posted once (the image event is its row's only post).
    await inst.wait_outbox_idle()
    ours = [e for e in vol.events(room)[mark:] if from_bot_in_thread(e)]
    assert [e["event_id"] for e in ours] == [shown["event_id"]], [body_of(e) for e in ours]


async def test_a_note_in_a_queue_room_and_the_limits(
    sample_installed, make_plugin_instance, matrix_setup, volunteer
):
    setup = matrix_setup()
    inst = make_plugin_instance({"sample": {}}, matrix=setup)
    app = await inst.start()
    ctx = app.plugins.context("sample")
    vol = await volunteer(setup)
    room = setup.rooms["suport"]
    await vol.wait_member(room, setup.bot_user_id)

    mark = vol.mark(room)
    await ctx.post_to_room(None, "la referència <b>@room</b> perd paquets")
    note = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and "referència" in (body_of(e) or ""),
        after=mark,
        what="the note in the default queue's room",
    )
    assert thread_root_of(note) is None
    assert note["content"]["m.mentions"] == {}
    assert "&lt;b&gt;@room&lt;/b&gt;" in note["content"]["formatted_body"]

    with pytest.raises(ValueError):
        await ctx.post_to_room("inexistent", "x")
    with pytest.raises(ValueError):
        await ctx.post_to_thread(999_999, "x")
    with pytest.raises(ValueError):
        await ctx.post_to_thread(1, "", image=b"\0" * (2 * 1024 * 1024 + 1))
    queued = inst.scalar("SELECT count(*) FROM outbox WHERE kind = 'chat'")
    await inst.wait_outbox_idle()
    assert inst.scalar("SELECT count(*) FROM outbox WHERE kind = 'chat'") == queued

    # A post with a key is queued once, however often it is asked for (a retry after a crash
    # between the post and the plugin's own record of it).
    assert await ctx.post_to_room(None, "la referència torna", key="sample:recovered:7") is True
    assert await ctx.post_to_room(None, "la referència torna", key="sample:recovered:7") is False
    assert await ctx.post_to_room(None, "una altra", key="sample:recovered:8") is True
    assert inst.scalar("SELECT count(*) FROM outbox WHERE kind = 'chat'") == queued + 2


async def test_without_matrix_nothing_is_queued(sample_installed, make_plugin_instance):
    inst = make_plugin_instance({"sample": {}})
    app = await inst.start()
    ctx = app.plugins.context("sample")
    await inst.send(member_mail(unique("membre"), inst.address, subject="Sense xat"))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    before = inst.scalar("SELECT count(*) FROM outbox WHERE kind = 'chat'")
    await ctx.post_to_thread(number, "nota", image=_png(50, 50))
    await ctx.post_to_room(None, "nota")
    assert inst.scalar("SELECT count(*) FROM outbox WHERE kind = 'chat'") == before
    with pytest.raises(ValueError):
        await ctx.post_to_thread(number + 1, "nota")


async def test_an_image_is_posted_once_when_the_send_s_answer_is_lost(
    sample_installed, make_plugin_instance, matrix_setup, volunteer
):
    """The worst crash point: the homeserver took the image event but the answer never came
    back (nothing recorded). The retry uploads again and sends with the same transaction id:
    the homeserver returns the event it has, the room shows one image."""
    setup = matrix_setup(encrypted={"suport"})
    inst = make_plugin_instance({"sample": {}}, matrix=setup)
    app = await inst.start()
    ctx = app.plugins.context("sample")
    vol = await volunteer(setup)
    room = setup.rooms["suport"]
    await vol.wait_member(room, setup.bot_user_id)
    subject = unique("Talls")
    await inst.send(member_mail(unique("membre"), inst.address, subject=subject))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    root = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and subject in (body_of(e) or ""),
        what="the ticket's root",
    )

    client = app.matrix.nio
    real_send = client.room_send
    lost: list[str] = []
    uploads: list[str] = []
    real_upload = client.upload

    async def upload(*args, **kwargs):
        response, keys = await real_upload(*args, **kwargs)
        uploads.append(response.content_uri)
        return response, keys

    async def send_once_then_lose_the_answer(room_id, message_type, content, **kwargs):
        response = await real_send(room_id, message_type, content, **kwargs)
        if content.get("msgtype") == "m.image" and not lost:
            lost.append(response.event_id)
            raise ConnectionError("the answer was lost")
        return response

    client.room_send = send_once_then_lose_the_answer
    client.upload = upload
    mark = vol.mark(room)
    image = _png(120, 80)
    await ctx.post_to_thread(number, "", image=image, width=120, height=80)
    await inst.wait_outbox_idle()
    assert lost and len(uploads) == 2  # sent at the first attempt, uploaded again at the retry
    row = inst.scalar("SELECT max(id) FROM outbox WHERE kind = 'chat'")
    assert inst.scalar("SELECT event_id FROM chat_posts WHERE outbox_id = :r", r=row) == lost[0]
    shown = await vol.wait_for(
        room,
        lambda e: e["event_id"] == lost[0],
        after=mark,
        what="the image",
    )
    assert thread_root_of(shown) == root["event_id"]
    assert shown["content"]["body"] == "image.png"  # no caption: the file name
    # A later note: once the volunteer sees it, any second image would have been seen too.
    await ctx.post_to_thread(number, "després")
    await vol.wait_for(
        room, lambda e: body_of(e) == "després", after=mark, what="the note after the image"
    )
    images = [
        e for e in vol.events(room)[mark:] if (e.get("content") or {}).get("msgtype") == "m.image"
    ]
    assert len(images) == 1
