"""A folder of images, one subfolder per class: folder/cat/1.png, folder/dog/x.jpg, ...

Class indices follow the sorted subfolder names (SourceData.class_names["label"]); files are
taken in sorted order, at any depth under their class folder; hidden files and folders are
skipped. Reading the folder needs no TensorFlow: only chunks() decodes, as a tf.data
pipeline (read, decode, convert channels, resize to data.image_size) that hands out CHUNK
images at a time with at most a chunk or two decoded ahead, so the folder never has to fit
in memory.

An image's size is read from its header, in the bytes the decoder is about to get, and one
over data.max_pixels is refused before it is decoded: a small file may state a size whose
pixels fill the machine's memory (a decompression bomb).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ...errors import DataError
from ..image_headers import DamagedHeader, decoded_pixels, describe
from ..preprocess import image_shape_after
from ..source import CHUNK, SourceData
from ..split import ArraySpec
from .common import INPUT, source_path, tf_reason

if TYPE_CHECKING:
    import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # what tf.io.decode_image reads
LABEL = "label"
COLORS = {"rgb": 3, "grayscale": 1}
# data.max_pixels's default (schema.py): 8192 x 8192, above a 48-megapixel photo. Decoding
# takes about 5 bytes a pixel and channel (bytes, then float32) before the resize.
MAX_PIXELS = 2**26


def read(params: dict[str, Any], paths: dict[str, Path]) -> SourceData:
    import numpy as np

    folder = source_path(paths, "data.source=images")
    source = f"data.path {folder}"
    if params.get("image_size") is None:
        raise DataError("data.image_size is required for source=images: the [height, width] every image is resized to")
    color = str(getattr(params.get("color"), "value", params.get("color") or "rgb"))
    if color not in COLORS:
        raise DataError(f"data.color must be one of {', '.join(COLORS)}, got {color!r}")
    shape = image_shape_after((1, 1, COLORS[color]), params["image_size"], None)
    max_pixels = int(params.get("max_pixels") or MAX_PIXELS)
    classes, files, labels = scan(folder, source)

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        yield from _decoded(files, shape, folder, source, max_pixels)

    return SourceData(
        description=source,
        count=len(files),
        inputs={INPUT: ArraySpec(shape, "float32")},
        targets={LABEL: np.asarray(labels, dtype=np.int64)},
        chunks=chunks,
        images=True,
        class_names={LABEL: classes},
    )


def scan(folder: Path, source: str) -> tuple[list[str], list[Path], list[int]]:
    """(class names, image files, their class indices), checked, in a stable order."""
    if not folder.exists():
        raise DataError(f"{source}: no such folder")
    if not folder.is_dir():
        raise DataError(f"{source}: is a file; source=images needs a folder with one subfolder of images per class")
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    linked = [d.name for d in class_dirs if d.is_symlink()]
    if linked:
        # The folder's digest (the data step's key) covers the files inside it, not behind a link
        # to a folder: images there could change and the cached split would still be served.
        raise DataError(f"{source}: class folder '{linked[0]}' is a link to a folder; tfbuild keys the files "
                        "inside data.path only: copy (or bind-mount) the images in")
    if not class_dirs:
        raise DataError(f"{source}: has no class subfolders; put each class's images in a subfolder named after "
                        f"the class ({folder.name}/cat/1.png, {folder.name}/dog/2.png)")
    if len(class_dirs) < 2:
        raise DataError(f"{source}: has one class subfolder ('{class_dirs[0].name}'); a classifier needs 2 or more")
    files: list[Path] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        found = sorted(
            p for p in class_dir.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(class_dir).parts) and p.is_file()
        )
        for path in found:
            if path.suffix.lower() not in EXTENSIONS:
                raise DataError(f"{source}: {path.relative_to(folder)} is not an image tfbuild reads "
                                f"({', '.join(e[1:] for e in EXTENSIONS)}); move it out of the folder")
        if not found:
            raise DataError(f"{source}: class folder '{class_dir.name}' holds no images "
                            f"({', '.join(e[1:] for e in EXTENSIONS)})")
        files += found
        labels += [index] * len(found)
    return [d.name for d in class_dirs], files, labels


def pixels_of(contents: bytes) -> int:
    """What decoding `contents` would make, in pixels: 0 for what is not an image (the decoder
    refuses it unread), past any limit for an image whose header is damaged."""
    try:
        pixels = decoded_pixels(bytes(contents))
    except DamagedHeader:
        return _NEVER
    return min(pixels or 0, _NEVER)


_NEVER = 2**63 - 1  # over every data.max_pixels


def _decoded(files: list[Path], shape: tuple[int, ...], folder: Path, source: str,
             max_pixels: int) -> Iterator[dict[str, np.ndarray]]:
    import numpy as np

    from ...tfenv import import_tensorflow

    tf = import_tensorflow()
    height, width, channels = shape

    def load(path: Any) -> Any:
        contents = tf.io.read_file(path)
        # Checked on the very bytes decoded next (a file replaced after a check of its own
        # would slip through); over the limit, the chunk fails and _blame says which file.
        pixels = tf.numpy_function(lambda c: np.int64(pixels_of(c)), [contents], tf.int64, stateful=False)
        within = tf.debugging.assert_less_equal(pixels, tf.constant(max_pixels, tf.int64), message="data.max_pixels")
        with tf.control_dependencies([within]):
            image = tf.io.decode_image(contents, channels=0, dtype=tf.float32, expand_animations=False)
        # Channels converted here, not by the decoder: decoders of different formats refuse
        # or weigh colours differently; this way every file gets the same rule as
        # preprocess.apply_image_shape (luminance for gray, repeat for colour, alpha dropped).
        have = tf.shape(image)[-1]
        if channels == 3:
            image = tf.cond(have >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
        else:
            image = tf.cond(have >= 3, lambda: tf.image.rgb_to_grayscale(image[..., :3]), lambda: image[..., :1])
        image = tf.image.resize(image, (height, width), method="bilinear")
        return tf.ensure_shape(image, shape)

    names = tf.constant([str(f) for f in files])
    pipeline = (
        tf.data.Dataset.from_tensor_slices(names)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(CHUNK)
        .prefetch(1)  # decode the next chunk while this one is written; no further ahead
    )
    batches = iter(pipeline)
    for start in range(0, len(files), CHUNK):
        try:
            batch = next(batches)
        except tf.errors.OpError:
            raise _blame(load, files[start : start + CHUNK], folder, source, max_pixels) from None
        yield {INPUT: batch.numpy()}


def _blame(load: Any, files: list[Path], folder: Path, source: str, max_pixels: int) -> DataError:
    """Which file of a chunk that failed to decode, and why in one line: its size over
    data.max_pixels, a damaged header, or TensorFlow's reason."""
    from ...tfenv import import_tensorflow

    tf = import_tensorflow()
    for path in files:
        refused = _over_limit(path, folder, source, max_pixels)
        if refused is not None:
            return refused
        try:
            load(tf.constant(str(path)))
        except tf.errors.OpError as exc:
            return DataError(f"{source}: {path.relative_to(folder)} cannot be decoded as an image ({tf_reason(exc)})")
    return DataError(f"{source}: the images from {files[0].relative_to(folder)} to {files[-1].relative_to(folder)} "
                     f"cannot be decoded (TensorFlow gave no single file as the cause)")


def _over_limit(path: Path, folder: Path, source: str, max_pixels: int) -> DataError | None:
    """The error for an image whose header states more than `max_pixels`, or is damaged."""
    try:
        contents = path.read_bytes()
    except OSError:
        return None  # TensorFlow's read says why
    try:
        pixels = decoded_pixels(contents)
    except DamagedHeader as exc:
        return DataError(f"{source}: {path.relative_to(folder)} cannot be decoded as an image ({exc})")
    if pixels is not None and pixels > max_pixels:
        return DataError(f"{source}: {path.relative_to(folder)} is {describe(contents)} ({pixels:,} pixels to decode), "
                         f"over data.max_pixels={max_pixels:,}; shrink the image, or raise data.max_pixels")
    return None
