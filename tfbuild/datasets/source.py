"""What a data source hands the `data` step: names, shapes, labels, and inputs in chunks.

Labels are small (one value per sample per target) and come whole, so they can be checked
and split up front; inputs (pixels, feature vectors) come as a stream of chunks in sample
order, so an image folder larger than memory is never held at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from .split import ArraySpec

if TYPE_CHECKING:
    import numpy as np

# Samples per chunk a source yields (and the data step writes); small enough for 224x224x3
# float32 images (about 77 MB a chunk), large enough that per-chunk overhead vanishes.
CHUNK = 128


@dataclass
class SourceData:
    description: str  # how errors name the source: "data.path /x/y.csv", "sklearn digits"
    count: int  # samples
    inputs: dict[str, ArraySpec]  # name -> per-sample shape and dtype, as read (before preprocessing)
    targets: dict[str, "np.ndarray"]  # name -> all labels or values, one row per sample
    # Yields {input name: array of up to CHUNK samples}, in sample order, covering `count`.
    chunks: Callable[[], Iterator[dict[str, "np.ndarray"]]]
    images: bool = False  # inputs are decoded images (H, W, C) with values 0..1
    # Classification target name -> class names in label order (label i is class_names[i]),
    # where the source knows them (image folder names, scikit-learn's target names).
    class_names: dict[str, list[str]] = field(default_factory=dict)
