"""Image-shaped preprocessing for any source whose samples are images: data.image_size
resizes them, data.channels converts 1 <-> 3 channels (so 8x8x1 digits can feed a
MobileNet at 32x32x3).

`image_shape_after` is pure (planning checks shapes with it before TensorFlow is imported);
`apply_image_shape` does it to a chunk of samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import DataError, TfbuildError

if TYPE_CHECKING:
    import numpy as np

# ITU-R BT.601 luma, the weights tf.image.rgb_to_grayscale uses: the images source converts
# with the same, so a grayscale image is the same whichever way it got one channel.
LUMA = (0.2989, 0.5870, 0.1140)


def image_shape_after(shape: Sequence[int], image_size: Sequence[int] | None, channels: int | None,
                      error: type[TfbuildError] = DataError) -> tuple[int, ...]:
    """The per-sample shape after preprocessing: (height, width, channels) when anything is
    asked (a (H, W) sample gains a channel axis), else `shape` unchanged. `error` is the class
    raised (planning passes ConfigError)."""
    shape = tuple(int(d) for d in shape)
    if image_size is None and channels is None:
        return shape
    if image_size is not None and (
        not isinstance(image_size, (list, tuple)) or len(image_size) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in image_size)
    ):
        raise error(f"data.image_size must be [height, width] (two positive integers), got {_plain(image_size)}")
    if channels is not None and channels not in (1, 3):
        raise error(f"data.channels must be 1 or 3, got {channels!r}")
    key = "data.image_size" if image_size is not None else "data.channels"
    if len(shape) not in (2, 3):
        raise error(f"{key}: samples of shape {shape} are not images ((height, width) or (height, width, channels))")
    have = shape[2] if len(shape) == 3 else 1
    if channels is not None and have != channels and have not in (1, 3):
        raise error(f"data.channels: samples with {have} channels cannot be converted to {channels} (only 1 <-> 3)")
    height, width = image_size if image_size is not None else shape[:2]
    return (int(height), int(width), channels or have)


def apply_image_shape(chunk: np.ndarray, image_size: Sequence[int] | None, channels: int | None) -> np.ndarray:
    """A chunk of samples (n, H, W) or (n, H, W, C), resized (bilinear, tf.image.resize) and
    converted to `channels` (1 -> 3 repeats the channel; 3 -> 1 takes the luminance)."""
    import numpy as np

    after = image_shape_after(chunk.shape[1:], image_size, channels)
    x = np.asarray(chunk, dtype=np.float32)
    if after == x.shape[1:]:
        return x
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 3 and after[-1] == 1:  # fewer channels to resize: convert first
        x = _luma(x)
    if x.shape[1:3] != after[:2]:
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        x = tf.image.resize(x, after[:2], method="bilinear").numpy()
    if x.shape[-1] == 1 and after[-1] == 3:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x, dtype=np.float32)


def _luma(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.tensordot(x, np.asarray(LUMA, np.float32), axes=([-1], [0]))[..., None].astype(np.float32)


def _plain(value: object) -> str:
    return str(list(value)) if isinstance(value, tuple) else repr(value) if isinstance(value, str) else str(value)
