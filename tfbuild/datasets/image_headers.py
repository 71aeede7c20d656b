"""How many pixels decoding an image would make, read from its header without decoding it.

A 219 KB PNG that says 50,000 x 50,000 inflates to gigabytes: the decoder believes the
header and allocates what it states. So the image source reads the same header first (PNG's
IHDR, JPEG's SOF marker, GIF's screen and frames, BMP's info header) and refuses an image over
data.max_pixels before TensorFlow sees it. Formats are told apart by their first bytes, as
tf.io.decode_image does, whatever the file's extension. Pure Python, no imaging library.
"""

from __future__ import annotations

import struct

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"
GIF = b"GIF8"
BMP = b"BM"
# JPEG's start-of-frame markers (baseline, progressive, lossless, arithmetic: all carry the
# size the same way); C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length follows


class DamagedHeader(ValueError):
    """A file that starts like a PNG, JPEG, GIF or BMP but whose size cannot be read."""


def decoded_pixels(data: bytes) -> int | None:
    """Pixels tf.io.decode_image would allocate for `data` (for an animated GIF, all its frames:
    every one is read), or None when `data` is none of the formats it reads (it refuses those
    itself, decoding nothing). Raises DamagedHeader for a known format with no readable size."""
    try:
        if data.startswith(PNG):
            return _png(data)
        if data.startswith(JPEG):
            return _jpeg(data)
        if data.startswith(GIF):
            return _gif(data)
        if data.startswith(BMP):
            return _bmp(data)
    except (struct.error, IndexError):
        raise DamagedHeader("its header is cut short") from None
    return None


def describe(data: bytes) -> str:
    """The size as a user reads it ('40000 x 40000 pixels'), for error messages."""
    try:
        if data.startswith(GIF):
            width, height = struct.unpack_from("<HH", data, 6)
            frames = _gif_frames(data)
            return f"{width} x {height} pixels x {len(frames)} frame{'s' * (len(frames) != 1)}"
        if data.startswith(PNG):
            width, height = struct.unpack_from(">II", data, 16)
        elif data.startswith(JPEG):
            height, width = _jpeg_size(data)
        else:
            width, height = struct.unpack_from("<ii", data, 18)
        return f"{abs(width)} x {abs(height)} pixels"
    except (struct.error, IndexError, DamagedHeader):
        return "of unreadable size"


def _png(data: bytes) -> int:
    if data[12:16] != b"IHDR":
        raise DamagedHeader("its first chunk is not IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    return width * height


def _jpeg(data: bytes) -> int:
    height, width = _jpeg_size(data)
    return width * height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) of the first frame header, walking the markers as libjpeg does: bytes
    that are not a marker are skipped, as are 0xFF fill bytes."""
    pos = 2
    while True:
        while data[pos] != 0xFF:  # IndexError at the end: cut short
            pos += 1
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker in _STANDALONE:  # a stuffed 0xFF, or no segment follows
            continue
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height == 0:  # the height would come in a DNL marker, which libjpeg refuses
                raise DamagedHeader("its frame header gives no height")
            return height, width
        if marker in (0xD9, 0xDA):  # end of image, or the scan, before any frame header
            raise DamagedHeader("it has no frame header")
        (length,) = struct.unpack_from(">H", data, pos)
        pos += length


def _gif(data: bytes) -> int:
    width, height = struct.unpack_from("<HH", data, 6)
    # giflib reads every frame into a raster of its own size before TensorFlow takes the first
    # onto the screen: an animation is as big as all its frames, a still as its screen.
    return max(width * height, sum(_gif_frames(data)))


def _gif_frames(data: bytes) -> list[int]:
    """Each frame's own area (width x height), in order, found by skipping the data blocks.
    A frame counts as soon as its descriptor is read: giflib allocates it before its data."""
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = []
    while pos < len(data):
        block = data[pos]
        if block == 0x2C:  # an image descriptor
            _, _, width, height, flags = struct.unpack_from("<HHHHB", data, pos + 1)
            frames.append(width * height)
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1  # + the LZW code size
            pos = _skip_sub_blocks(data, pos)
        elif block == 0x21:  # an extension: its label, then data blocks
            pos = _skip_sub_blocks(data, pos + 2)
        else:  # 0x3B, the trailer; anything else makes giflib stop with an error
            break
    return frames


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos]:
        pos += data[pos] + 1
    return pos + 1


def _bmp(data: bytes) -> int:
    # Where and how TensorFlow reads them (32-bit, whatever the info header's kind); a
    # negative height means rows stored top-down.
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width) * abs(height)
