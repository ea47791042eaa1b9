"""Review photos: check what was uploaded, re-encode it with Pillow, and keep only the pixels.

The type is decided by decoding the file, never by its name or declared Content-Type. Re-encoding
drops everything but the image: EXIF (camera, GPS position), XMP, ICC profiles, comments, and any
payload hidden after the image data. Orientation from EXIF is applied first so photos stay upright.
"""

import io
import secrets
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from tertulia.core.errors import ErrorDetail

MAX_PHOTOS = 4
MAX_BYTES = 5 * 1024 * 1024
MAX_SIDE = 4000  # refused above this, before decoding the pixels
STORED_SIDE = 2000  # what we keep: enough for a zoomed review photo
ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class EncodedPhoto:
    data: bytes
    content_type: str  # image/jpeg or image/webp
    width: int
    height: int

    @property
    def extension(self) -> str:
        return "webp" if self.content_type == "image/webp" else "jpg"


def _problem(index: int, code: str, message: str) -> ErrorDetail:
    return ErrorDetail(field=f"photos[{index}]", code=code, message=message)


def photo_encode(*, data: bytes, index: int = 0) -> EncodedPhoto | ErrorDetail:
    """The cleaned photo, or the problem with it (as an error detail for the answer)."""
    if not data:
        return _problem(index, "empty", _("The file is empty."))
    if len(data) > MAX_BYTES:
        return _problem(index, "too_large", _("Photos may be at most 5 MB."))
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            width, height = probe.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return _problem(index, "unsupported_type", _("Send a JPEG, PNG or WebP image."))
    if kind not in ACCEPTED_FORMATS:
        return _problem(index, "unsupported_type", _("Send a JPEG, PNG or WebP image."))
    if width > MAX_SIDE or height > MAX_SIDE or width < 1 or height < 1:
        return _problem(index, "too_many_pixels", _("Photos may be at most 4000 pixels on each side."))
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            image.thumbnail((STORED_SIDE, STORED_SIDE))
            keep_alpha = kind in ("PNG", "WEBP") and ("A" in image.getbands() or "transparency" in image.info)
            out = io.BytesIO()
            # A new image from the raw pixels: Pillow would otherwise carry comments, EXIF and ICC from
            # `info` into the file it writes.
            mode = "RGBA" if keep_alpha else "RGB"
            image = Image.frombytes(mode, image.size, image.convert(mode).tobytes())
            if keep_alpha:
                # No exif=, icc_profile= or xmp= arguments: the new file carries pixels only.
                image.save(out, format="WEBP", quality=85, method=4)
                content_type = "image/webp"
            else:
                image.save(out, format="JPEG", quality=85, optimize=True, progressive=True)
                content_type = "image/jpeg"
            return EncodedPhoto(data=out.getvalue(), content_type=content_type, width=image.width,
                                height=image.height)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return _problem(index, "unreadable", _("The image could not be read; it may be damaged."))


def photo_store(*, store_id: int, photo: EncodedPhoto) -> tuple[str, str]:
    """Save through Django's storage under MEDIA_ROOT; returns (key, stored name)."""
    key = secrets.token_hex(16)
    name = default_storage.save(f"ugc/{store_id}/{key}.{photo.extension}", ContentFile(photo.data))
    return key, name
