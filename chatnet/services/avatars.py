"""Profile pictures: an uploaded image decoded, checked and re-encoded (docs/protocol.md 4, 7).

A profile picture is readable by every logged-in user, so nothing a user
uploads is ever published as it is. :func:`make_avatar` (blocking; the file
service runs it in the reactor's thread pool, one at a time) opens the
uploaded bytes with Pillow, accepts only PNG, JPEG, WebP or GIF *by content*
(the declared name and mime are ignored), refuses an image whose header
declares more than :data:`MAX_AVATAR_PIXELS` before any pixel is decoded (a
decompression bomb costs a header read), and writes a new
:data:`AVATAR_SIZE` x :data:`AVATAR_SIZE` PNG: centred, cropped to a square,
orientation applied, first frame only, no metadata (EXIF, text chunks, ICC
profiles are not copied). The caller stores that PNG and deletes the upload.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

#: Side of the stored square picture, pixels.
AVATAR_SIZE = 256
#: Largest upload accepted for a profile picture, bytes (``too_large`` at begin).
MAX_AVATAR_UPLOAD = 10 * 1024 * 1024
#: Largest picture accepted, in pixels (width x height read from the header before
#: decoding): 24 MP is a 6000 x 4000 camera image; decoded as RGBA it takes 96 MB.
MAX_AVATAR_PIXELS = 24_000_000
#: Formats recognised by content (Pillow's format names).
AVATAR_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
#: The stored picture's name and media type.
AVATAR_NAME = "avatar.png"
AVATAR_MIME = "image/png"

# What Pillow raises for bytes it cannot make an image of (truncated or corrupt
# data, unknown formats); anything else is a bug and goes to the log.
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class AvatarRefused(Exception):
    """The upload cannot become a profile picture.

    Args:
        message: for the user, e.g. "the file is not a PNG, JPEG, WebP or GIF image".
        too_large: whether it was refused for its size (``too_large``) rather than
            its content (``bad_request``).
    """

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


@dataclass(frozen=True)
class Avatar:
    """A re-encoded picture written to disk.

    Attributes:
        sha256: hex SHA-256 of the PNG.
        size: its length in bytes.
    """

    sha256: str
    size: int


def make_avatar(source: Path, dest: Path) -> Avatar:
    """Decode the image at ``source`` and write its re-encoded profile picture to ``dest``.

    Blocking (runs in a worker thread).

    Args:
        source: the uploaded bytes.
        dest: where the PNG goes (overwritten).

    Returns:
        the PNG's SHA-256 and size.

    Raises:
        AvatarRefused: not a PNG/JPEG/WebP/GIF image, unreadable, or over
            :data:`MAX_AVATAR_PIXELS`.
    """
    try:
        with Image.open(source, formats=AVATAR_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_AVATAR_PIXELS:
                raise _too_many_pixels(f"has {width} x {height} pixels")
            # JPEG can decode at 1/2, 1/4 or 1/8 scale: no need for every pixel.
            image.draft("RGB", (AVATAR_SIZE, AVATAR_SIZE))
            image.load()
            picture = _square(image)
    except Image.DecompressionBombError:
        # Pillow's own limit (far above ours) refused it before decoding.
        raise _too_many_pixels("is far too large") from None
    except _UNREADABLE:
        raise AvatarRefused("the file is not a PNG, JPEG, WebP or GIF image, or it is "
                            "damaged") from None
    out = io.BytesIO()
    picture.save(out, "PNG")  # a new file: no EXIF, text chunks or ICC profile
    data = out.getvalue()
    dest.write_bytes(data)
    return Avatar(hashlib.sha256(data).hexdigest(), len(data))


def _square(image: Image.Image) -> Image.Image:
    """The picture upright, cropped to a centred square and scaled to AVATAR_SIZE."""
    upright = ImageOps.exif_transpose(image)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    converted = upright.convert("RGBA" if has_alpha else "RGB")
    return ImageOps.fit(converted, (AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS)


def _too_many_pixels(what: str) -> AvatarRefused:
    return AvatarRefused(f"the picture {what}; profile pictures may have at most "
                         f"{MAX_AVATAR_PIXELS} pixels", too_large=True)
