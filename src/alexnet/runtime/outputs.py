"""Every file the package writes for a user goes through here: one atomic write, checked.

- ``atomic_write(path, write)``: ``write`` fills a temporary file in the destination's
  folder (same file system, named ``.NAME.RANDOM.tmp``), which is then
  flushed, fsync'ed and renamed over ``path``, and the folder fsync'ed. A reader, or a
  process killed at any moment, sees the old file or the new one, never half of one. The
  rename replaces the directory entry only: another hard link to the old file (the run
  folder's best.pt / last.pt / step-*.pt are one file) keeps the old content, and a
  symlink at ``path`` is replaced by the file, its target untouched.
- ``check_output_file`` / ``check_output_folder``: before the expensive work, refuse an
  output that is one of the command's inputs (the same file, compared by inode, so a hard
  link to an input is refused too), a folder given for a file, a file given for a folder,
  or a location that cannot be created or written.
- ``output_errors(root)`` / ``writes_into("dest")``: any ``OSError`` of an output location
  (missing folder that cannot be made, read-only, full disk, a file in the way) becomes a
  one-line ``AlexNetError`` naming the path and what to do, never a traceback.
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alexnet.errors import AlexNetError

PathLike = str | os.PathLike[str]
F = TypeVar("F", bound=Callable[..., Any])

# what the user can do about each errno of an output location
_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or choose another location",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another location",
    errno.EFBIG: "the file is too large for this file system: choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "permission denied: choose a location you can write to",
    errno.EPERM: "not permitted: choose a location you can write to",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another location",
    errno.EEXIST: "a file is in the way of a folder: choose another location",
    errno.ENOENT: "its folder does not exist and cannot be created: choose another location",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter one",
    errno.ELOOP: "the path has a symlink loop: choose another location",
}
# errors that concern wherever the data is going, even when they name no file
_ALWAYS_OUTPUT = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _label(path: PathLike, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def describe_os_error(error: OSError, path: PathLike, flag: str | None = None) -> str:
    """``cannot write --json /proc/x/e.json: /proc/x: its folder ... choose another location``"""
    advice = _ADVICE.get(error.errno or 0, f"{error.strerror or error}: choose another location")
    where = ""
    if error.filename and not _is_temporary(error.filename) and Path(error.filename) != Path(path):
        where = f"{error.filename}: "
    return f"cannot write {_label(path, flag)}: {where}{advice}"


def _is_temporary(name: object) -> bool:
    return isinstance(name, str | os.PathLike) and Path(name).name.startswith(".") and Path(name).name.endswith(".tmp")


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file (same inode: also through a hard link or symlink)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _check_location(path: Path, label: str) -> None:
    """The folders above ``path`` exist or can be made, and the nearest existing one is a
    writable folder: an empty file is made there and removed (permissions alone do not
    tell: root passes them on a read-only or virtual file system such as /proc). A cheap
    check before the work; the write itself is checked again."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise AlexNetError(f"cannot write {label}: {ancestor} is a file, not a folder; "
                           "choose another location")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise AlexNetError(f"cannot write {label}: {ancestor} is not writable; choose a "
                           "location you can write to")
    try:
        fd, probe = tempfile.mkstemp(prefix=".alexnet-probe.", suffix=".tmp", dir=ancestor)
    except OSError as error:
        advice = _ADVICE[error.errno] if error.errno in (*_ALWAYS_OUTPUT, errno.EACCES, errno.EPERM) \
            else f"{error.strerror or error}; choose another location"
        raise AlexNetError(f"cannot write {label}: no file can be made in {ancestor}: {advice}") from error
    os.close(fd)
    os.unlink(probe)


def _check_not_input(path: Path, label: str, inputs: Iterable[PathLike | None]) -> None:
    for source in inputs:
        if source is not None and same_file(path, source):
            also = "" if Path(source) == path else f" ({source})"
            raise AlexNetError(f"{label} is also an input{also}: writing it would destroy the input; "
                               "choose another output location")


def check_output_file(path: PathLike, *, inputs: Iterable[PathLike | None] = (),
                      flag: str | None = None, suffixes: Iterable[str] | None = None) -> Path:
    """``path`` as a file this command may write: not an input, not a folder, in a folder that
    exists or can be made and is writable; with ``suffixes``, one of those endings."""
    path = Path(path)
    label = _label(path, flag)
    if str(path) in ("", "."):
        raise AlexNetError(f"{label or 'output'}: no file name given")
    if path.is_dir():
        raise AlexNetError(f"{label} is a folder; give a file name (e.g. {path / 'out'}"
                           f"{next(iter(suffixes), '') if suffixes else ''})")
    if suffixes is not None:
        endings = tuple(suffixes)
        if not path.name.lower().endswith(endings):
            raise AlexNetError(f"{label}: this output is written as {' or '.join(endings)}; "
                               f"name the file *{' or *'.join(endings)}")
    _check_not_input(path, label, inputs)
    _check_location(path, label)
    return path


def check_output_folder(path: PathLike, *, inputs: Iterable[PathLike | None] = (),
                        flag: str | None = None) -> Path:
    """``path`` as a folder this command may write into: not a file, creatable, writable."""
    path = Path(path)
    label = _label(path, flag)
    if os.path.lexists(path) and not path.is_dir():
        raise AlexNetError(f"{label} is a file; give a folder")
    _check_not_input(path, label, inputs)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise AlexNetError(f"cannot write into {label}: the folder is not writable; choose "
                               "a location you can write to")
        return path
    _check_location(path, label)
    return path


def make_folder(path: PathLike, flag: str | None = None) -> Path:
    """``mkdir -p``, with a one-line error where the folder cannot be made."""
    path = Path(path)
    with output_errors(path, flag):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def output_errors(root: PathLike, flag: str | None = None) -> Iterator[None]:
    """Turn an ``OSError`` of the output location ``root`` (the file or the folder written)
    into a one-line ``AlexNetError``. A full or read-only disk counts whatever file it names;
    other errors count when they name a path inside ``root`` (else they are not ours)."""
    try:
        yield
    except OSError as error:
        if _concerns(error, Path(root)):
            raise AlexNetError(describe_os_error(error, root, flag)) from error
        raise


def _concerns(error: OSError, root: Path) -> bool:
    if error.errno in _ALWAYS_OUTPUT:
        return True
    if not error.filename:
        return False
    name = Path(os.path.abspath(error.filename))
    top = Path(os.path.abspath(root))
    beside = name.parent == top.parent and _is_temporary(name)  # the write's temporary file
    return name == top or beside or top in name.parents or name in top.parents


def writes_into(argument: str) -> Callable[[F], F]:
    """Decorator: the function's ``OSError`` of the output location named by ``argument``
    (a parameter name, or ``param.attribute``) becomes a one-line ``AlexNetError``."""
    name, _, attribute = argument.partition(".")

    def decorate(function: F) -> F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            root = bound.arguments[name]
            root = getattr(root, attribute) if attribute else root
            with output_errors(root):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def atomic_write(path: PathLike, write: Callable[[Path], object], *,
                 inputs: Iterable[PathLike | None] = (), flag: str | None = None) -> Path:
    """Call ``write(temporary_path)``, then fsync and rename the result over ``path``.

    The temporary file is ``.NAME.RANDOM.tmp`` beside ``path`` (what ``--fresh`` and the
    run-folder check recognise as ours); writers that decide the format by the file's
    ending are given it explicitly (``save_figure``) or write into an open file (numpy). On
    any error, or a KeyboardInterrupt, the temporary file is removed and ``path`` is as it
    was.
    """
    path = check_output_file(path, inputs=inputs, flag=flag)
    with output_errors(path, flag):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        temporary = Path(name)
        try:
            write(temporary)
            _fsync(temporary, os.O_RDONLY)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync(path.parent, os.O_RDONLY, quiet=True)
    return path


def _fsync(path: Path, flags: int, quiet: bool = False) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        if quiet:  # some file systems do not open folders
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not quiet:
            raise
    finally:
        os.close(fd)


def write_bytes(path: PathLike, data: bytes, **options: Any) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_bytes(data), **options)


def write_text(path: PathLike, text: str, **options: Any) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), **options)


def write_json(path: PathLike, value: object, **options: Any) -> Path:
    """Indented JSON (non-JSON values as their ``str``), newline-terminated."""
    return write_text(path, json.dumps(value, indent=2, default=str) + "\n", **options)


def figure_formats() -> list[str]:
    """The file endings matplotlib can write (png, pdf, svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_figure_path(path: PathLike, *, inputs: Iterable[PathLike | None] = (),
                      flag: str | None = None) -> Path:
    """A figure's output file, with an ending matplotlib can write."""
    formats = figure_formats()
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in formats:
        raise AlexNetError(f"{_label(path, flag)}: figures are written as {', '.join(formats)}; "
                           "name the file e.g. *.png")
    return check_output_file(path, inputs=inputs, flag=flag)


def save_figure(figure: Any, path: PathLike, *, inputs: Iterable[PathLike | None] = (),
                flag: str | None = None, **savefig: Any) -> Path:
    """``figure.savefig`` through ``atomic_write`` (the format from the file's ending)."""
    path = check_figure_path(path, inputs=inputs, flag=flag)
    form = path.suffix.lower().lstrip(".")
    return atomic_write(path, lambda temporary: figure.savefig(temporary, format=form, **savefig),
                        inputs=inputs, flag=flag)
