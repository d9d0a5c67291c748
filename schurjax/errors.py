"""The error raised for bad input: an argument, a file or a folder that schurjax cannot use."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input, said in one line: which argument (or file) was wrong, what arrived and what was expected.

    ``arg`` names the Python argument (``"out"``, ``"families"``, ``"models"``), or is None when the message
    names a file; the ``schurjax`` command maps arguments to its flags (``out`` -> ``--out``).

    Example:
        >>> str(InputError("sweep", "trials", "must be an int >= 1, got 0"))
        'sweep: trials: must be an int >= 1, got 0'
    """

    def __init__(self, where: str, arg: str | None, detail: str):
        self.where, self.arg, self.detail = where, arg, detail
        super().__init__(f"{where}: {arg}: {detail}" if arg else f"{where}: {detail}")
