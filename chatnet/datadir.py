"""The data directory, private by construction: created 0700, files 0600.

Everything chatnet keeps (the SQLite database and its ``-wal``/``-shm``
files, the development CA's keys, uploaded blobs and partial uploads) is
readable by the user the server runs as and by nobody else:

* :func:`private_umask` sets the process umask to at least ``0o077`` (a
  stricter one, e.g. from ``twistd --umask 0277``, is kept), so every file and
  directory created afterwards is private whoever creates it;
* :func:`prepare_data_dir` creates the directory (0700) and refuses it when a
  folder in it is writable by group or others, or an entry belongs to another
  user: the files could have been replaced, so the server must not trust them
  (it raises :class:`~chatnet.config.ConfigError` with the path and the command
  that fixes it, before changing anything). Then it takes read access away
  from group and others on what an older version, a copy or an operator left
  readable, and returns what it changed so that the caller can log it.

Symbolic links are neither followed nor changed.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

from chatnet.config import ConfigError

#: The bits the umask always clears: nothing created is readable, writable or
#: searchable by group or others.
PRIVATE_UMASK = 0o077


def private_umask() -> int:
    """Set the process umask to the previous one plus :data:`PRIVATE_UMASK`.

    Returns:
        the umask in force before the call.
    """
    previous = os.umask(PRIVATE_UMASK)
    os.umask(previous | PRIVATE_UMASK)
    return previous


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _check_entry(path: Path, st: os.stat_result, data_dir: Path, uid: int) -> None:
    if st.st_uid != uid:
        raise ConfigError(
            f"--data-dir: {path} belongs to {_user(st.st_uid)}, not to {_user(uid)} who runs "
            f"chatnet; run chatnet as {_user(st.st_uid)}, or give the data to this user: "
            f"chown -R {_user(uid)} {data_dir}")
    if stat.S_ISDIR(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"--data-dir: {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}), so its files cannot be trusted; check them "
            f"and make it private: chmod go-w {path} (or chmod -R go-rwx {data_dir})")


def prepare_data_dir(data_dir: Path, extra_files: Iterable[Path] = ()) -> list[Path]:
    """Create the data directory (mode 0700) if missing, check the whole tree, and
    take group and other access away from whatever has it.

    Call :func:`private_umask` first, so that what is created later is private too.

    Args:
        data_dir: the server's ``--data-dir``.
        extra_files: files kept outside it that must be private as well (a
            ``--database sqlite:PATH`` file; its ``-wal`` and ``-shm`` are added).

    Returns:
        the paths whose mode was tightened (empty when all was private already).

    Raises:
        ConfigError: a directory in the tree is writable by group or others, an
            entry belongs to another user, or ``data_dir`` is not a directory.
    """
    uid = os.geteuid()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not data_dir.is_dir():
        raise ConfigError(f"--data-dir: {data_dir} must be a directory")
    tightened: list[Path] = []

    def tighten(path: Path, st: os.stat_result) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            os.chmod(path, mode & ~0o077)
            tightened.append(path)

    # Check every directory before changing anything: a tree that is refused is
    # left exactly as it was found.
    entries: list[tuple[Path, os.stat_result]] = []
    for root, dirs, files in os.walk(data_dir):
        for name in (".", *dirs, *files):
            path = Path(root) if name == "." else Path(root, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            if name == "." and path != data_dir:
                continue  # seen already as one of its parent's dirs
            _check_entry(path, st, data_dir, uid)
            entries.append((path, st))
    for path, st in entries:
        tighten(path, st)
    for extra in extra_files:
        for path in (extra, Path(f"{extra}-wal"), Path(f"{extra}-shm")):
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                _check_entry(path, st, path.parent, uid)
                tighten(path, st)
    return tightened
