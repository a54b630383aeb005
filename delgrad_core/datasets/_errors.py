"""Errors raised when a dataset's files are missing or malformed, or its options refused (the one
place they are defined)."""

from __future__ import annotations

from delgrad_core._errors import FileFormatError, InvalidValueError

__all__ = ["DatasetFileError", "DatasetFilesNotFoundError", "DatasetOptionsError"]


class DatasetFileError(FileFormatError):
    """A dataset file is malformed: bad magic number, unsupported type, wrong length, bad values.

    The message names the file and the problem.
    """


class DatasetFilesNotFoundError(DatasetFileError, FileNotFoundError):
    """Files a dataset needs are missing; the message says where they were looked for and how to get them.

    Also a ``FileNotFoundError``, so that ``except FileNotFoundError`` catches it.
    """


class DatasetOptionsError(InvalidValueError):
    """A dataset's loader refused the value of an option it was given (a usage error on the
    command line, unlike a malformed file).

    The message names the dataset and the option.
    """
