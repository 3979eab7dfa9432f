"""Profile pictures (docs/protocol.md 4 and 7): only pictures uploaded for that purpose,
decoded and re-encoded by the server, ever become public. Real server, real TLS,
real images made with Pillow."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from typing import Any

import pytest
import pytest_twisted
from PIL import Image, PngImagePlugin
from twisted.internet import reactor

from chatnet.client.files import upload_avatar
from chatnet.client.session import ChatSession
from chatnet.errors import ErrorCode
from chatnet.services.avatars import AVATAR_SIZE, MAX_AVATAR_PIXELS, MAX_AVATAR_UPLOAD
from tests.support.chat import expect_error, room_with_members
from tests.support.server import PASSWORD, RunningServer

#: EXIF tag numbers written into test JPEGs.
_MAKE, _DESCRIPTION = 0x010F, 0x010E


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(conn: Any, data: bytes, name: str, purpose: str | None = None,
                 mime: str | None = None) -> dict[str, Any]:
    """begin / chunk / finish over the wire; returns finish's result."""
    args: dict[str, Any] = {"name": name, "size": len(data), "sha256": sha(data)}
    if purpose is not None:
        args["purpose"] = purpose
    if mime is not None:
        args["mime"] = mime
    begin = await conn.request("file.upload.begin", args)
    offset = begin["offset"]
    while offset < len(data):
        piece = data[offset:offset + begin["chunk_size"]]
        await conn.request("file.upload.chunk", {"upload_id": begin["upload_id"],
                                                 "offset": offset, "data": piece})
        offset += len(piece)
    return await conn.request("file.upload.finish", {"upload_id": begin["upload_id"]})


async def download(conn: Any, file_id: str) -> bytes:
    data = b""
    while True:
        page = await conn.request("file.download", {"file_id": file_id, "offset": len(data),
                                                    "length": 256 * 1024})
        data += page["data"]
        if page["eof"]:
            return data


def striped(size: tuple[int, int] = (600, 300), mode: str = "RGB") -> Image.Image:
    """Red, green and blue vertical thirds: a centred square crop is mostly green,
    with red at its left edge and blue at its right."""
    image = Image.new(mode, size)
    third = size[0] // 3
    for i, colour in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
        image.paste(colour if mode == "RGB" else (*colour, 255),
                    (i * third, 0, (i + 1) * third, size[1]))
    return image


def jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[_MAKE] = "SecretCam"
    exif[_DESCRIPTION] = "taken at the salary review"
    out = io.BytesIO()
    striped().save(out, "JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at the salary review")
    out = io.BytesIO()
    striped(mode="RGBA").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def encoded(fmt: str, size: tuple[int, int] = (600, 300)) -> bytes:
    out = io.BytesIO()
    striped(size).save(out, fmt)
    return out.getvalue()


def png_bomb() -> bytes:
    """A real 1-bit PNG of 6000 x 5000 pixels: a few KB on the wire, 90 MB once
    decoded to RGB."""
    out = io.BytesIO()
    Image.new("1", (6000, 5000)).save(out, "PNG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    # IHDR follows the 8-byte signature: length(4) type(4) width(4) height(4) ...
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


async def private_room(owner: Any, *members: Any) -> int:
    """A private room of ``owner`` that ``members`` (connections) were invited to and joined."""
    return await room_with_members(owner, *members, name="hr")


# -- the attack ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_members_private_attachment_cannot_become_a_public_avatar(server):
    """bob sees alice's private-room salaries.xlsx but cannot set it (or any attachment,
    his own included) as his profile picture; once kicked, neither he nor a stranger
    can read it."""
    alice, bob, eve = [await server.user(n) for n in ("alice", "bob", "eve")]
    room_id = await private_room(alice, bob)
    salaries = await upload(alice, b"name,salary\nalice,100\n", "salaries.xlsx")
    await alice.request("msg.send", {"room_id": room_id, "body": "", "client_msg_id": "s",
                                     "attachments": [salaries["file_id"]]})
    assert (await bob.request("file.info", {"file_id": salaries["file_id"]}))["name"] == \
        "salaries.xlsx"
    await expect_error(bob.request("user.update", {"avatar_file_id": salaries["file_id"]}),
                       ErrorCode.NOT_FOUND)
    own = await upload(bob, b"my own attachment", "mine.png")
    await expect_error(bob.request("user.update", {"avatar_file_id": own["file_id"]}),
                       ErrorCode.NOT_FOUND)
    assert "avatar_file_id" not in await eve.request("user.get", {"username": "bob"})
    await alice.request("room.kick", {"room_id": room_id, "username": "bob"})
    for who in (bob, eve):
        for op, args in (("file.info", {}), ("file.download", {"offset": 0, "length": 10})):
            await expect_error(who.request(op, {"file_id": salaries["file_id"], **args}),
                               ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_someone_elses_avatar_file_cannot_be_set_or_attached(server):
    """An avatar file is readable by everyone, but only its uploader may make it their
    picture, and nobody can attach it to a message."""
    alice, bob = await server.user("alice"), await server.user("bob")
    picture = await upload(alice, encoded("PNG"), "me.png", purpose="avatar")
    assert (await bob.request("file.info", {"file_id": picture["file_id"]}))["purpose"] == \
        "avatar"
    await expect_error(bob.request("user.update", {"avatar_file_id": picture["file_id"]}),
                       ErrorCode.NOT_FOUND)
    for conn in (alice, bob):
        room_id = await private_room(conn)
        await expect_error(conn.request("msg.send", {
            "room_id": room_id, "body": "", "client_msg_id": f"a-{room_id}",
            "attachments": [picture["file_id"]]}), ErrorCode.NOT_FOUND)


# -- what is accepted, and what is stored -----------------------------------------------------


@pytest.mark.parametrize("name,make", [("photo.jpg", jpeg_with_exif), ("me.png", png_with_text),
                                       ("me.webp", lambda: encoded("WEBP")),
                                       ("me.gif", lambda: encoded("GIF"))])
@pytest_twisted.ensureDeferred
async def test_a_picture_is_reencoded_to_a_square_png_without_metadata(server, name, make):
    """A real image made with Pillow is accepted; what the server stores (and a
    stranger downloads) is a new 256 x 256 PNG, centre-cropped, without EXIF or text
    chunks; the uploaded bytes are not kept anywhere."""
    original = make()
    bob, eve = await server.user("bob"), await server.user("eve")
    result = await upload(bob, original, name, purpose="avatar")
    assert (result["name"], result["mime"], result["purpose"]) == \
        ("avatar.png", "image/png", "avatar")
    profile = await bob.request("user.update", {"avatar_file_id": result["file_id"]})
    assert profile["avatar_file_id"] == result["file_id"]
    assert (await eve.request("user.get", {"username": "bob"}))["avatar_file_id"] == \
        result["file_id"]
    stored = await download(eve, result["file_id"])
    assert stored != original and sha(stored) == result["sha256"] != sha(original)
    assert len(stored) == result["size"]
    with Image.open(io.BytesIO(stored)) as picture:
        assert picture.format == "PNG"
        assert picture.size == (AVATAR_SIZE, AVATAR_SIZE)
        assert not picture.getexif() and "exif" not in picture.info
        assert not getattr(picture, "text", {})
        rgb = picture.convert("RGB")
        centre, left, right = (rgb.getpixel((AVATAR_SIZE // 2, AVATAR_SIZE // 2)),
                               rgb.getpixel((5, AVATAR_SIZE // 2)),
                               rgb.getpixel((AVATAR_SIZE - 5, AVATAR_SIZE // 2)))
    assert max(range(3), key=lambda c: centre[c]) == 1  # green in the middle
    assert max(range(3), key=lambda c: left[c]) == 0 and max(range(3), key=lambda c: right[c]) == 2
    assert b"SecretCam" not in stored and b"salary review" not in stored
    files = server.service.files
    assert not files.blob_path(sha(original)).exists()
    assert list(files.partial.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_a_text_file_named_png_is_refused(server):
    """Content decides, not the name or the declared mime: text called .png is
    bad_request at finish, and the upload is gone."""
    bob = await server.user("bob")
    data = b"this is not a picture\n" * 10
    begin = await bob.request("file.upload.begin", {"name": "me.png", "size": len(data),
                                                    "sha256": sha(data), "mime": "image/png",
                                                    "purpose": "avatar"})
    await bob.request("file.upload.chunk", {"upload_id": begin["upload_id"], "offset": 0,
                                            "data": data})
    error = await expect_error(bob.request("file.upload.finish",
                                           {"upload_id": begin["upload_id"]}),
                               ErrorCode.BAD_REQUEST)
    assert "PNG, JPEG, WebP or GIF" in error.message
    await expect_error(bob.request("file.upload.finish", {"upload_id": begin["upload_id"]}),
                       ErrorCode.NOT_FOUND)
    assert list(server.service.files.partial.iterdir()) == []
    assert await server.service.store.bytes_used(bob.login_result["user_id"]) == 0


@pytest.mark.parametrize("make", [png_bomb, lambda: png_claiming(100_000, 100_000)],
                         ids=["6000x5000-1bit", "header-100000x100000"])
@pytest_twisted.ensureDeferred
async def test_a_decompression_bomb_is_refused_from_its_header(server, make):
    """A small file that decodes to a huge picture is too_large, refused from the
    dimensions in its header (the message names them) before any pixel is decoded."""
    bob = await server.user("bob")
    bomb = make()
    assert len(bomb) < 64 * 1024
    error = await expect_error(upload(bob, bomb, "bomb.png", purpose="avatar"),
                               ErrorCode.TOO_LARGE)
    assert str(MAX_AVATAR_PIXELS) in error.message
    assert list(server.service.files.partial.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_a_picture_over_the_byte_limit_is_refused_at_begin(server):
    """An avatar upload declared over 10 MiB is too_large before any byte is sent."""
    bob = await server.user("bob")
    error = await expect_error(bob.request("file.upload.begin", {
        "name": "huge.png", "size": MAX_AVATAR_UPLOAD + 1, "sha256": sha(b"x"),
        "purpose": "avatar"}), ErrorCode.TOO_LARGE)
    assert error.details == {"max_file_size": MAX_AVATAR_UPLOAD}


# -- replacing and clearing ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_replaced_or_cleared_avatar_is_deleted(server):
    """Setting a new picture deletes the old one (file and blob); clearing it deletes
    the current one; unused candidates do not pile up."""
    bob, eve = await server.user("bob"), await server.user("eve")
    files = server.service.files
    first = await upload(bob, encoded("PNG"), "a.png", purpose="avatar")
    await bob.request("user.update", {"avatar_file_id": first["file_id"]})
    second = await upload(bob, jpeg_with_exif(), "b.jpg", purpose="avatar")
    third = await upload(bob, encoded("GIF", (900, 300)), "c.gif", purpose="avatar")
    assert len({first["sha256"], second["sha256"], third["sha256"]}) == 3
    # Uploading the third deleted the second (never used); the current one stays.
    await expect_error(eve.request("file.info", {"file_id": second["file_id"]}),
                       ErrorCode.NOT_FOUND)
    assert (await eve.request("file.info", {"file_id": first["file_id"]}))["size"] > 0
    await bob.request("user.update", {"avatar_file_id": third["file_id"]})
    await expect_error(eve.request("file.info", {"file_id": first["file_id"]}),
                       ErrorCode.NOT_FOUND)
    assert not files.blob_path(first["sha256"]).exists()
    assert not files.blob_path(second["sha256"]).exists()
    assert files.blob_path(third["sha256"]).exists()
    profile = await bob.request("user.update", {"avatar_file_id": ""})
    assert "avatar_file_id" not in profile
    await expect_error(eve.request("file.info", {"file_id": third["file_id"]}),
                       ErrorCode.NOT_FOUND)
    assert not files.blob_path(third["sha256"]).exists()


@pytest_twisted.ensureDeferred
async def test_a_blob_shared_with_another_file_stays(server):
    """Two users with the same picture share one blob; deleting one user's picture
    leaves the other's readable."""
    alice, bob = await server.user("alice"), await server.user("bob")
    data = encoded("PNG")
    mine = await upload(alice, data, "a.png", purpose="avatar")
    theirs = await upload(bob, data, "a.png", purpose="avatar")
    assert mine["sha256"] == theirs["sha256"] and mine["file_id"] != theirs["file_id"]
    await alice.request("user.update", {"avatar_file_id": mine["file_id"]})
    await alice.request("user.update", {"avatar_file_id": ""})
    assert await download(alice, theirs["file_id"]) == await download(bob, theirs["file_id"])


# -- the client library ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_upload_avatar_sets_the_profile_picture(server: RunningServer, tmp_path):
    """chatnet.client.files.upload_avatar uploads for that purpose and sets the
    result; a file that is not a picture fails with bad_request and changes nothing."""
    source = tmp_path / "me.jpg"
    source.write_bytes(jpeg_with_exif())
    session = ChatSession(reactor, "localhost", server.port, "carol", PASSWORD, ca=server.ca)
    await session.start(register=True)
    try:
        profile = await upload_avatar(session, source)
        info = await session.call("file.info", {"file_id": profile["avatar_file_id"]})
        assert (info["mime"], info["purpose"]) == ("image/png", "avatar")
        (tmp_path / "notes.png").write_bytes(b"plain text")
        await expect_error(upload_avatar(session, tmp_path / "notes.png"),
                           ErrorCode.BAD_REQUEST)
        again = await session.call("user.get", {"username": "carol"})
        assert again["avatar_file_id"] == profile["avatar_file_id"]
    finally:
        await session.close()


@pytest_twisted.ensureDeferred
async def test_room_members_carry_each_members_picture(server):
    """room.members names each member's picture (null without one), so a client
    draws a members list without a user.get per person; a cleared picture is null
    again."""
    bob, eve = await server.user("bob"), await server.user("eve")
    room = await bob.request("room.create", {"name": "pictures", "visibility": "public"})
    await eve.request("room.join", {"room_id": room["room_id"]})
    picture = await upload(bob, encoded("PNG"), "me.png", purpose="avatar")
    await bob.request("user.update", {"avatar_file_id": picture["file_id"]})

    async def pictures() -> dict[str, Any]:
        members = (await eve.request("room.members", {"room_id": room["room_id"]}))["members"]
        return {m["username"]: m["avatar_file_id"] for m in members}

    assert await pictures() == {"bob": picture["file_id"], "eve": None}
    await bob.request("user.update", {"avatar_file_id": ""})
    assert await pictures() == {"bob": None, "eve": None}
