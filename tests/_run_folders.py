"""The training of the finished run folder (conftest's `finished_run`) of the tests of resumes
and run folders, and the digests of a folder's files."""

import hashlib

# a small, fast training (4 hidden neurons, no delays, batches of 250)
TRAIN = ["train", "--hidden", "4", "--delays", "none", "--batch-size", "250", "--no-progress"]


def file_digests(folder) -> dict:
    """SHA-256 of each file in `folder`, by name."""
    return {entry.name: hashlib.sha256(entry.read_bytes()).hexdigest() for entry in sorted(folder.iterdir())}
