"""Which argv items of a run may name a file, looked up once per folder state, not per run.

The cache key holds the content of every argv item that names a regular file (``code:file
ITEM``), so each item of each run used to cost a ``stat``: eight for ``train.py --lr 0.1
--epochs 3 --optimizer adam``, each one a syscall that hands the GIL to the writer threads on
a busy machine. Most items (flags, numbers, words, a param's value that differs every run)
name nothing. Two ways to know that without looking, both exact:

* by the text alone (:func:`cannot_name_a_file`): an empty item, ``.``, ``..``, one ending in
  ``/`` (a folder at most) or holding a NUL byte (no path at all);
* by the folder (:class:`FolderNames`): an item without a ``/`` names an entry of the working
  folder itself, and creating, removing or renaming an entry there changes the folder's
  mtime. So the folder is listed once, with its (device, inode, mtime), and while those stay
  the same an item that is not among the entries that may be files (anything but a folder:
  a file, a symbolic link, whose target may appear elsewhere) names none; that costs one
  ``stat`` of the folder per run. A folder changed within the last :data:`QUIET_S` seconds
  is not trusted (an entry made in the same clock tick as the change before it would leave
  the mtime as it was: git's "racy" case), nor one too big to list: their items are looked
  at one by one, as before. Names are compared folded (:func:`folded`: case and Unicode
  normalisation), so on a case-insensitive file system ``Train.py`` still counts for
  ``train.py`` (on others, such a pair costs a ``stat``, nothing more).
"""

from __future__ import annotations

import os
import time
import unicodedata

__all__ = ["LIST_MAX", "QUIET_S", "FolderNames", "cannot_name_a_file", "folded"]

#: Seconds a folder must have been left alone before its listing is trusted: more than the
#: coarsest mtime granularity of a common file system (FAT: 2 s) and a clock tick.
QUIET_S = 3.0
#: Entries beyond which a folder is not listed (its items are looked at one by one).
LIST_MAX = 10_000


def cannot_name_a_file(item: str) -> bool:
    """Whether ``item``'s text alone says it names no regular file."""
    if item and item[-1] not in "/." and "\0" not in item:
        return False  # most items: one look
    return (
        not item
        or item in (".", "..")
        or item.endswith(("/", "/.", "/.."))
        or "\0" in item  # not a path at all (os.stat would refuse it)
    )


def folded(name: str) -> str:
    """``name`` as a case-insensitive, normalising file system may take it."""
    return name.casefold() if name.isascii() else unicodedata.normalize("NFC", name).casefold()


class FolderNames:
    """Per sweep: the entries of each working folder that may be files, as it is now."""

    def __init__(self) -> None:
        #: Folder -> ((device, inode, mtime_ns), its entries that are not folders).
        self._folders: dict[str, tuple[tuple[int, int, int], frozenset[str]]] = {}

    def maybe_files(self, folder: str) -> frozenset[str] | None:
        """The :func:`folded` names of ``folder``'s entries that may be files, as the folder
        is at this call: an item without a ``/`` whose folded name is not among them names no
        file. None when the folder cannot be trusted (changed recently, missing, too big):
        look at each item."""
        try:
            info = os.stat(folder)
        except OSError:
            self._folders.pop(folder, None)
            return None
        state = (info.st_dev, info.st_ino, info.st_mtime_ns)
        known = self._folders.get(folder)
        if known is not None and known[0] == state:
            return known[1]
        self._folders.pop(folder, None)
        if info.st_mtime > time.time() - QUIET_S:
            return None
        names = _may_be_files(folder)  # listed after the stat: a change meanwhile is seen next
        if names is not None:
            self._folders[folder] = (state, names)
        return names


def _may_be_files(folder: str) -> frozenset[str] | None:
    names = []
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= LIST_MAX:
                    return None
                if not entry.is_dir(follow_symlinks=False):
                    names.append(folded(entry.name))
    except OSError:
        return None
    return frozenset(names)
