"""Errors raised when a dataset's files are missing or malformed (the one place they are defined)."""

from __future__ import annotations

from delgrad_core._errors import FileFormatError

__all__ = ["DatasetFileError", "DatasetFilesNotFoundError"]


class DatasetFileError(FileFormatError):
    """A dataset file is malformed: bad magic number, unsupported type, wrong length, bad values.

    The message names the file and the problem.
    """


class DatasetFilesNotFoundError(DatasetFileError, FileNotFoundError):
    """Files a dataset needs are missing; the message says where they were looked for and how to get them.

    Also a ``FileNotFoundError``, so that ``except FileNotFoundError`` catches it.
    """
