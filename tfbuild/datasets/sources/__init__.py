"""One reader per `data.source`: `read(params, paths) -> SourceData` (see ../source.py)."""
