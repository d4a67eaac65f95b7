"""Thumbnail geometry (pure) and rendering with Pillow (blocking: callers run it in a thread).

Images are opened lazily: `Image.open` reads only the header, so the dimensions of a
decompression bomb are known, and the image refused, before a single pixel is decoded.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow and its plugins are imported by the first thumbnail, not at start-up.
    from PIL import Image

# The sizes the spec recommends; requests are snapped to one of these so the cache stays small.
THUMBNAIL_SIZES: tuple[tuple[int, int, str], ...] = (
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
)
METHODS = ("crop", "scale")

# Source type -> Pillow format we accept for it.
THUMBNAILABLE = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
ANIMATABLE = {"image/gif": "GIF", "image/webp": "WEBP"}
MAX_ANIMATED_FRAMES = 100


class ImageTooLarge(Exception):
    """The image's declared pixel count is over the limit."""


class NotThumbnailable(Exception):
    """The content is not an image we can read."""


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int


def choose_size(width: int, height: int, method: str) -> tuple[int, int, str]:
    """The configured size to serve for a request: the smallest of its method covering the request,
    else that method's largest (never smaller than asked unless nothing bigger is configured)."""
    same = [s for s in THUMBNAIL_SIZES if s[2] == method] or list(THUMBNAIL_SIZES)
    covering = [s for s in same if s[0] >= width and s[1] >= height]
    if covering:
        return min(covering, key=lambda s: s[0] * s[1])
    return max(same, key=lambda s: s[0] * s[1])


def scaled_size(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest size with the source's aspect ratio that fits the box; never larger than the source."""
    factor = min(box_w / src_w, box_h / src_h, 1.0)
    return max(1, round(src_w * factor)), max(1, round(src_h * factor))


def crop_box(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int, int, int]:
    """The centred region of the source with the box's aspect ratio."""
    if src_w * box_h > src_h * box_w:  # source is wider than the box: trim the sides
        crop_w = max(1, round(src_h * box_w / box_h))
        left = (src_w - crop_w) // 2
        return left, 0, left + crop_w, src_h
    crop_h = max(1, round(src_w * box_h / box_w))
    top = (src_h - crop_h) // 2
    return 0, top, src_w, top + crop_h


def output_type(source_type: str, animated: bool) -> str:
    if animated:
        return source_type
    return "image/jpeg" if source_type == "image/jpeg" else "image/png"


def _open_checked(path: str, source_type: str, max_pixels: int) -> Image.Image:
    from PIL import Image

    fmt = THUMBNAILABLE.get(source_type)
    if fmt is None:
        raise NotThumbnailable(source_type)
    try:
        image = Image.open(path, formats=[fmt])
    except Image.DecompressionBombError:
        # Pillow's own header check, at twice its default limit; either way nothing was decoded.
        raise ImageTooLarge(path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise NotThumbnailable(str(e)) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise NotThumbnailable("empty image")
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(f"{width}x{height}")
    return image


def image_size(path: str, source_type: str, max_pixels: int) -> tuple[int, int]:
    """Width and height from the header alone."""
    with _open_checked(path, source_type, max_pixels) as image:
        return image.size


def render_thumbnail(path: str, source_type: str, box_w: int, box_h: int, method: str, *,
                     max_pixels: int, animated: bool = False) -> Thumbnail | None:
    """A thumbnail of the image at `path`, or None when the original already fits (serve it as is)."""
    from PIL import Image, ImageOps

    with _open_checked(path, source_type, max_pixels) as image:
        src_w, src_h = image.size
        if src_w <= box_w and src_h <= box_h:
            return None
        frames = getattr(image, "n_frames", 1)
        if animated and source_type in ANIMATABLE and 1 < frames <= MAX_ANIMATED_FRAMES:
            return _render_animated(image, source_type, box_w, box_h, method)
        try:
            if image.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: far less work for large photos.
                factor = _decode_factor(src_w, src_h, box_w, box_h, method)
                image.draft("RGB", (math.ceil(src_w * factor), math.ceil(src_h * factor)))
            frame = _resize(ImageOps.exif_transpose(image), box_w, box_h, method)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise NotThumbnailable(str(e)) from None
    content_type = output_type(source_type, animated=False)
    return Thumbnail(_encode(frame, content_type), content_type, frame.width, frame.height)


def _decode_factor(src_w: int, src_h: int, box_w: int, box_h: int, method: str) -> float:
    # EXIF may rotate the image after decoding, so ask for enough pixels in either orientation.
    pick = max if method == "crop" else min
    return max(pick(box_w / src_w, box_h / src_h), pick(box_w / src_h, box_h / src_w))


def _resize(image: Image.Image, box_w: int, box_h: int, method: str) -> Image.Image:
    if method == "crop":
        image = image.crop(crop_box(image.width, image.height, box_w, box_h))
    size = scaled_size(image.width, image.height, box_w, box_h)
    if size == image.size:
        return image
    from PIL import Image

    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encode(image: Image.Image, content_type: str) -> bytes:
    out = io.BytesIO()
    if content_type == "image/jpeg":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(out, "JPEG", quality=80, optimize=False)
    else:
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            image = image.convert("RGBA")
        image.save(out, "PNG", compress_level=6)
    return out.getvalue()


def _render_animated(image: Image.Image, source_type: str, box_w: int, box_h: int, method: str) -> Thumbnail:
    frames: list[Image.Image] = []
    durations: list[int] = []
    try:
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(_resize(image.convert("RGBA"), box_w, box_h, method))
            durations.append(int(image.info.get("duration", 100)))
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise NotThumbnailable(str(e)) from None
    out = io.BytesIO()
    fmt = ANIMATABLE[source_type]
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=durations,
                   loop=image.info.get("loop", 0), disposal=2)
    return Thumbnail(out.getvalue(), source_type, frames[0].width, frames[0].height)
