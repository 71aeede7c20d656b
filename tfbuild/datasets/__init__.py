"""Data: sources (readers of files and bundled sets), the split on disk, and the checks a
source must pass before anything trains on it."""
