"""One layer format for every storage driver: compare two filesystem views, write the change set as a layer.

The layer format is overlayfs's own (what runtime.container.layers stores and overlay mounts as a lower
layer): changed and added entries as they are, a deleted entry as a whiteout (a 0:0 character device),
a directory whose old contents are all gone as an opaque directory (xattr trusted.overlay.opaque=y).

A *view* is a stack of directories read as overlayfs reads them (base first): an image is the stack of
its layers; an overlay container is its image's stack plus its writable layer; a btrfs snapshot or a
vfs copy is a stack of one. Every driver's `diff` and `commit` compare the image's view with the
container's view with the same rules, so the same changes give the same layer on every driver:

- an entry is changed when its type, mode, owner, size, modification time (ns), device number or
  symlink target differ (directories: type, mode and owner; their contents are compared one by one),
  like Docker's naive diff (no content hashing: copies and snapshots keep mtimes);
- a directory of the old view that had entries, none of whose names is left in the new view, becomes
  opaque (with only its new entries), whatever sequence of calls got it there (`rm -rf d; mkdir d` and
  `rm d/*` give the same layer); otherwise each removed name becomes a whiteout;
- the parent directories of every change are in the layer, with the new view's metadata.
Hard links are written as separate files. overlayfs's own xattrs (trusted.overlay.*) are never copied.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTRS = "trusted.overlay."


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass(frozen=True)
class Entry:
    """One visible entry of a view: its metadata and the real path it is read from."""

    path: Path
    st: os.stat_result
    contributors: tuple[Path, ...]  # directories: the layer directories merged at this path, topmost first

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def root_entry(layers: Sequence[Path]) -> Entry:
    """The root of a view of `layers` (base first)."""
    top_first = tuple(Path(p) for p in reversed(layers))
    contributors = []
    for layer in top_first:
        contributors.append(layer)
        if is_opaque(layer):
            break
    return Entry(top_first[0], os.lstat(top_first[0]), tuple(contributors))


def children(entry: Entry) -> dict[str, Entry]:
    """The visible entries of a directory entry, by name, with overlayfs's lookup rules: the topmost
    layer holding a name decides; a whiteout hides the name; a non-directory or an opaque directory
    stops the merge with the layers below it."""
    found: dict[str, Entry] = {}
    hidden: set[str] = set()
    for layer_dir in entry.contributors:
        try:
            names = os.listdir(layer_dir)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name in hidden:
                continue
            path = layer_dir / name
            st = _lstat(path)
            if st is None:
                continue
            known = found.get(name)
            if known is None:
                if is_whiteout(st):
                    hidden.add(name)
                    continue
                stop = not stat.S_ISDIR(st.st_mode) or is_opaque(path)
                found[name] = Entry(path, st, () if not stat.S_ISDIR(st.st_mode) else (path,))
                if stop:
                    hidden.add(name)  # nothing below a non-directory or an opaque directory is merged
            elif known.is_dir and stat.S_ISDIR(st.st_mode):
                stop = is_opaque(path)
                found[name] = Entry(known.path, known.st, (*known.contributors, path))
                if stop:
                    hidden.add(name)
            else:
                hidden.add(name)  # a directory above a non-directory: the merge stops there
    return found


def same(old: Entry, new: Entry) -> bool:
    """Whether an entry is unchanged (see the module docstring for the rules)."""
    a, b = old.st, new.st
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True
    if (a.st_size, a.st_mtime_ns, a.st_rdev) != (b.st_size, b.st_mtime_ns, b.st_rdev):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(old.path) == os.readlink(new.path)
    return True


@dataclass(frozen=True)
class Change:
    """One entry of a change set: kind 'A' (added), 'C' (changed), 'D' (deleted); `opaque` on a directory
    whose old contents are all replaced. `source` is where an added or changed entry is read from."""

    kind: str
    path: str  # '/etc/hosts'
    source: Path | None = None
    opaque: bool = False
    is_dir: bool = False


def _added_tree(entry: Entry, rel: str) -> Iterator[Change]:
    yield Change("A", rel, entry.path, is_dir=entry.is_dir)
    if entry.is_dir:
        for name, child in sorted(children(entry).items()):
            yield from _added_tree(child, f"{rel}/{name}")


def _compare_dirs(old: Entry, new: Entry, rel: str) -> list[Change]:
    """Changes below two directories that exist in both views (the directories themselves excluded)."""
    if old.contributors == new.contributors:
        return []  # the same layer directories: nothing below can differ (an overlay's untouched tree)
    old_children, new_children = children(old), children(new)
    out: list[Change] = []
    if old_children and not (old_children.keys() & new_children.keys()):
        for name, child in sorted(new_children.items()):
            out.extend(_added_tree(child, f"{rel}/{name}"))
        return [Change("C", rel or "/", new.path, opaque=True, is_dir=True), *out]
    for name in sorted(old_children.keys() | new_children.keys()):
        path = f"{rel}/{name}"
        before, after = old_children.get(name), new_children.get(name)
        if after is None:
            out.append(Change("D", path))
        elif before is None:
            out.extend(_added_tree(after, path))
        elif before.is_dir and after.is_dir:
            below = _compare_dirs(before, after, path)
            if below and below[0].path == path:  # the directory became opaque: its own entry leads
                out.extend(below)
            elif below or not same(before, after):
                out.append(Change("C", path, after.path, is_dir=True))
                out.extend(below)
        elif after.is_dir:  # a non-directory replaced by a directory
            out.extend(_added_tree(after, path))
        elif not same(before, after):
            out.append(Change("C", path, after.path))
    return out


def compare(old_layers: Sequence[Path], new_layers: Sequence[Path]) -> list[Change]:
    """The change set that turns the view of `old_layers` into the view of `new_layers` (both base first),
    in path order (a directory before its contents)."""
    old, new = root_entry(old_layers), root_entry(new_layers)
    changes = _compare_dirs(old, new, "")
    if not same(old, new) and not (changes and changes[0].path == "/"):
        changes.insert(0, Change("C", "/", new.path, is_dir=True))
    return changes


def summary(changes: Sequence[Change]) -> list[tuple[str, str]]:
    """`diff` lines ('A'|'C'|'D', '/path'): an opaque directory lists as changed, the old names it hides
    are not listed one by one (as overlayfs's own diff shows it)."""
    return [(c.kind, c.path) for c in changes]


# ---- writing and applying layers --------------------------------------------------------------------

def copy_metadata(src: Path, dst: Path, st: os.stat_result) -> None:
    """Owner, mode, xattrs (but overlayfs's own) and times of `src` onto `dst` (no symlink is followed)."""
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    for name in names:
        if name.startswith(_OVERLAY_XATTRS):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError:
            continue  # an xattr the target filesystem does not take (e.g. system.* on another fs)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_entry(src: Path, dst: Path, st: os.stat_result | None = None) -> None:
    """One entry (not a directory's contents) from `src` to `dst`, which must not exist."""
    st = st or os.lstat(src)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        os.mkdir(dst, 0o700)
    elif stat.S_ISREG(mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    else:  # devices, fifos, sockets (and whiteouts)
        os.mknod(dst, mode, st.st_rdev)
    copy_metadata(src, dst, st)


def write_layer(changes: Sequence[Change], dest: Path) -> None:
    """Materialise a change set as a layer directory `dest` (created; it must not exist). Directory
    times are set after their contents are written."""
    os.mkdir(dest, 0o755)
    dirs: list[tuple[Path, Path, os.stat_result]] = []
    for change in changes:
        target = dest / change.path.lstrip("/") if change.path != "/" else dest
        if change.kind == "D":
            os.mknod(target, stat.S_IFCHR | 0o600, 0)
            continue
        assert change.source is not None
        st = os.lstat(change.source)
        if change.path == "/":
            copy_metadata(change.source, dest, st)
        elif not target.exists() or not change.is_dir:
            copy_entry(change.source, target, st)
        if change.opaque:
            os.setxattr(target, OPAQUE_XATTR, b"y", follow_symlinks=False)
        if change.is_dir:
            dirs.append((change.source, target, st))
    for _src, target, st in reversed(dirs):
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def apply_layer(layer: Path, target: Path) -> None:
    """Apply an overlay-format layer onto a plain directory tree (the vfs and btrfs drivers' images):
    whiteouts delete, opaque directories replace, everything else is copied over (metadata included)."""
    dirs: list[tuple[Path, os.stat_result]] = []

    def walk(src_dir: Path, dst_dir: Path) -> None:
        for name in sorted(os.listdir(src_dir)):
            src, dst = src_dir / name, dst_dir / name
            st = os.lstat(src)
            if is_whiteout(st):
                _remove(dst)
                continue
            if stat.S_ISDIR(st.st_mode):
                if is_opaque(src) or not (dst.is_dir() and not dst.is_symlink()):
                    _remove(dst)
                    os.mkdir(dst, 0o700)
                copy_metadata(src, dst, st)
                walk(src, dst)
                dirs.append((dst, st))
            else:
                _remove(dst)
                copy_entry(src, dst, st)

    walk(layer, target)
    for dst, st in reversed(dirs):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    root_st = os.lstat(layer)
    copy_metadata(layer, target, root_st)


def manifest(layer: Path) -> dict[str, tuple[object, ...]]:
    """A layer's content as comparable data, by path: ('whiteout',), ('dir', mode, uid, gid, opaque),
    ('link', target), ('file', mode, uid, gid, bytes), ('node', mode, rdev). Times are left out: the same
    changes made at different moments give the same manifest."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(layer):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(layer))
            mode = stat.S_IMODE(st.st_mode)
            if is_whiteout(st):
                found[rel] = ("whiteout",)
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", mode, st.st_uid, st.st_gid, is_opaque(path))
            elif stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", mode, st.st_uid, st.st_gid, path.read_bytes())
            else:
                found[rel] = ("node", st.st_mode, st.st_rdev)
    return found
