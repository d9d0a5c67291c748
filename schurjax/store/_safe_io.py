"""File operations that stay inside a folder: every write into a run or study folder goes through here.

A run folder may come from a colleague or sit on a shared disk, so nothing under it is trusted to point where it
seems to. Between the folder (``root``, which the user named and which may itself be a symlink) and the file,
every component is opened with ``O_NOFOLLOW`` relative to its parent's descriptor, so a symlinked ``chunks/``,
``schur/``, ``figures/``, ``tables/`` or ``compressed/`` is refused in one line instead of followed. A file is
written to a temporary file created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) next to it, synced, and moved
into place with ``os.replace``: a symlink at the destination is replaced (never written through), and a reader
sees the whole old file or the whole new one, never a torn one.

Example::

    write_bytes(run, "chunks/000-00001.json", data)          # run/chunks/ created if missing
    fd = open_lock(run, ".lock")                               # O_NOFOLLOW; a symlinked .lock is refused
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath

from schurjax.errors import InputError

__all__ = [
    "write_bytes",
    "write_with",
    "write_files",
    "mkdirs",
    "open_lock",
    "read_bytes",
    "relative_parts",
    "check_name",
]

_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def check_name(where: str, arg: str | None, name: str) -> str:
    """``name`` if it is one safe file-name component (no ``/``, ``..``, NUL, leading dot or dash), else InputError.

    Example:
        >>> check_name("sweep", "models", "flipflop-0")
        'flipflop-0'
    """
    ok = (
        isinstance(name, str)
        and 0 < len(name) <= 200
        and name not in (".", "..")
        and not name.startswith((".", "-"))
        and not any(c in name for c in "/\\\0")
        and name.isprintable()
        and name == name.strip()
    )
    if not ok:
        raise InputError(
            where,
            arg,
            f"{name!r} is not a safe file name; expected one printable name of at most 200 characters "
            "(no '/', '\\', leading '.' or '-', outer spaces)",
        )
    return name


def relative_parts(
    root: str | os.PathLike, path: str | os.PathLike | tuple[str, ...], where: str = "sweep"
) -> tuple[str, ...]:
    """The components of ``path`` below ``root`` (``path`` relative to ``root``, or absolute under it)."""
    if isinstance(path, tuple):
        path = PurePath(*path)
    root, p = PurePath(os.fspath(root)), PurePath(os.fspath(path))
    if p.parts[: len(root.parts)] == root.parts:
        p = p.relative_to(root)
    elif p.is_absolute():
        raise InputError(where, None, f"{path} is not inside {root}; schurjax writes only inside it")
    parts = p.parts
    if not parts or any(x in ("..", ".", "") for x in parts) or p.is_absolute():
        raise InputError(where, None, f"{path} is not a path inside {root}")
    return parts


def _refusal(where: str, root: Path, parts: tuple[str, ...], err: OSError) -> InputError:
    shown = root.joinpath(*parts)
    if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        what = "a symlink" if os.path.islink(shown) else "not a folder"
        return InputError(
            where,
            None,
            f"{shown} is {what}; schurjax writes only inside {root} and follows no links there (remove it and rerun)",
        )
    return InputError(where, None, f"cannot write {shown}: {err.strerror or type(err).__name__}")


@contextlib.contextmanager
def _dir_fd(root: Path, parts: tuple[str, ...], *, create: bool, where: str) -> Iterator[int]:
    """A descriptor of ``root/parts...``, each component opened without following links (created when asked)."""
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise InputError(where, None, f"cannot open the folder {root}: {err.strerror}") from None
    try:
        for i, part in enumerate(parts):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
            try:
                nfd = os.open(part, _DIR, dir_fd=fd)
            except OSError as err:
                raise _refusal(where, root, parts[: i + 1], err) from None
            os.close(fd)
            fd = nfd
        yield fd
    finally:
        os.close(fd)


def mkdirs(root: str | os.PathLike, rel: str | os.PathLike, *, where: str = "sweep") -> Path:
    """Create ``root/rel`` (and the folders between), refusing any symlinked component. Returns the path."""
    root = Path(root)
    parts = relative_parts(root, rel, where)
    with _dir_fd(root, parts, create=True, where=where):
        pass
    return root.joinpath(*parts)


def _tmp_name(name: str) -> str:
    return f".{name[:100]}.{secrets.token_hex(6)}.tmp"


def write_bytes(root: str | os.PathLike, rel: str | os.PathLike, data: bytes, *, where: str = "sweep") -> Path:
    """Write ``data`` to ``root/rel`` atomically, without following any link below ``root``.

    Args:
        root: the run or study folder (must exist).
        rel: the file, relative to ``root`` (or absolute under it); missing folders between are created.
        data: the bytes.
        where: the function named in errors.

    Returns:
        The written path.

    Raises:
        InputError: one line, when a component below ``root`` is a symlink or not a folder, or the write fails.
    """
    return write_with(root, rel, lambda f: f.write(data), where=where)


def write_with(
    root: str | os.PathLike, rel: str | os.PathLike, writer: Callable[..., object], *, where: str = "sweep"
) -> Path:
    """Like :func:`write_bytes`, but ``writer(f)`` writes into the open binary temporary file ``f``."""
    root = Path(root)
    parts = relative_parts(root, rel, where)
    name = parts[-1]
    with _dir_fd(root, parts[:-1], create=True, where=where) as dfd:
        tmp = _tmp_name(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, 0o666, dir_fd=dfd)
        except OSError as err:
            raise _refusal(where, root, parts, err) from None
        try:
            with os.fdopen(fd, "wb") as f:
                writer(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            if isinstance(err, OSError):
                raise _refusal(where, root, parts, err) from None
            raise
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    return root.joinpath(*parts)


def write_files(
    root: str | os.PathLike, rel_dir: str | os.PathLike, writer: Callable[[Path], object], *, where: str = "sweep"
) -> list[Path]:
    """Let ``writer(tmp_dir)`` write files by path into a fresh private folder below ``root/rel_dir``, then move
    each into ``root/rel_dir`` with ``os.replace`` (for writers that only take a path, such as ``np.savez``).

    Returns:
        The moved files' paths.
    """
    root = Path(root)
    parts = relative_parts(root, rel_dir, where) if os.fspath(rel_dir) not in ("", ".") else ()
    out = []
    with _dir_fd(root, parts, create=True, where=where) as dfd:
        tmp = _tmp_name("files")
        os.mkdir(tmp, 0o700, dir_fd=dfd)
        tmp_path = root.joinpath(*parts, tmp)
        try:
            try:
                writer(tmp_path)
            except Exception as err:  # noqa: BLE001 - a writer's wrapped OSError (a full disk) is said as one
                cause = _os_error(err)
                if cause is None:
                    raise
                raise _refusal(where, root, parts, cause) from None
            with _dir_fd(root, (*parts, tmp), create=False, where=where) as tfd:
                for name in sorted(os.listdir(tfd)):
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=tfd)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(name, name, src_dir_fd=tfd, dst_dir_fd=dfd)
                    out.append(root.joinpath(*parts, name))
            with contextlib.suppress(OSError):
                os.fsync(dfd)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(tmp, dir_fd=dfd)
            if os.path.isdir(tmp_path) and not os.path.islink(tmp_path):
                shutil.rmtree(tmp_path, ignore_errors=True)
    return out


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err`` (itself, or its cause or context, e.g. inside equinox's TreePathError)."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def open_lock(root: str | os.PathLike, name: str, *, where: str = "sweep") -> int:
    """Open (creating) the lock file ``root/name`` read-write, never through a symlink. Returns the descriptor."""
    root = Path(root)
    with _dir_fd(root, (), create=False, where=where) as dfd:
        try:
            return os.open(
                name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644, dir_fd=dfd
            )
        except OSError as err:
            raise _refusal(where, root, (name,), err) from None


def read_bytes(root: str | os.PathLike, rel: str | os.PathLike, *, where: str = "load") -> bytes:
    """The bytes of ``root/rel``, read without following any link below ``root`` (InputError otherwise)."""
    root = Path(root)
    parts = relative_parts(root, rel, where)
    with _dir_fd(root, parts[:-1], create=False, where=where) as dfd:
        try:
            # O_NONBLOCK: a FIFO put in place of a file must not block the open (it is refused below)
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(parts[-1], flags, dir_fd=dfd)
        except OSError as err:
            if err.errno == errno.ENOENT:
                raise FileNotFoundError(str(root.joinpath(*parts))) from None
            raise _refusal(where, root, parts, err) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InputError(
                where,
                None,
                f"{root.joinpath(*parts)} is not a regular file (a FIFO, device or folder); schurjax reads only the "
                "files it wrote there (remove it and rerun)",
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            return f.read()
