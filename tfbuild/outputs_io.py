"""Named model outputs on disk: `outputs.json` (the names, in order) and `0.npy`, `1.npy`, ...

Names are whatever a model calls its tensors, so files are numbered; .npy bytes depend on the
content only, so equal outputs give equal digests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np


def save_outputs(folder: Path, outputs: Mapping[str, np.ndarray]) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "outputs.json").write_text(json.dumps({"names": list(outputs)}) + "\n")
    for i, array in enumerate(outputs.values()):
        np.save(folder / f"{i}.npy", np.ascontiguousarray(array))


def load_outputs(folder: Path) -> dict[str, np.ndarray]:
    import numpy as np

    names = json.loads((folder / "outputs.json").read_text())["names"]
    return {name: np.load(folder / f"{i}.npy") for i, name in enumerate(names)}
