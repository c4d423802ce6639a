"""The shared rootfs as a Docker image: imported once per image hash, tagged `isolab/rootfs:<hash>`.

The tree is streamed with tar (numeric owners, extended attributes) into the Engine's import API, as
`docker import` does; the import is tagged only after tar finished cleanly, so an interrupted or failed
import never leaves a tagged image a later run would use (its untagged remains are removed at once, and
by `remove_stale`). The tag is reused while the hash is unchanged; isolab tags of hashes no longer in the
image cache are removed (when no container uses them): a cached hash may be another worktree's or run's.
One import at a time across processes (runtime.state lock `docker-image`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from runtime import state
from runtime.errors import ImageError
from runtime.image.store import Image, ImageStore

REPOSITORY = "isolab/rootfs"
LABEL_IMAGE = "org.isolab.image"
LOCK = "docker-image"
CHUNK = 1 << 20


def tag_for(image: Image) -> str:
    return f"{REPOSITORY}:{image.digest}"


def ensure(client: Any, image: Image) -> dict[str, object]:
    """Make sure the image is imported; facts for env.json (tag, image id, whether and how long it took)."""
    import docker.errors

    tag = tag_for(image)
    with state.locked(LOCK):
        try:
            found = client.images.get(tag)
            return {"tag": tag, "id": found.id, "imported_now": False}
        except docker.errors.ImageNotFound:
            pass
        began = time.perf_counter()
        image_id = _import(client, image)
        seconds = time.perf_counter() - began
        removed = remove_stale(client, cached_digests(ImageStore(image.path.parent.parent)) | {image.digest})
    return {"tag": tag, "id": image_id, "imported_now": True, "import_s": round(seconds, 2),
            "removed_older": removed}


def _import(client: Any, image: Image) -> str:
    if not image.rootfs.is_dir():
        raise ImageError(f"docker: the image's rootfs {image.rootfs} is missing")
    tar = subprocess.Popen(["tar", "-C", str(image.rootfs), "--numeric-owner", "--xattrs",
                            "--xattrs-include=*", "-cf", "-", "."],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdout is not None and tar.stderr is not None

    def chunks() -> Iterator[bytes]:
        while chunk := tar.stdout.read(CHUNK):  # type: ignore[union-attr]
            yield chunk

    image_id = None
    try:
        reply = client.api.import_image(src=chunks(), stream_src=True,
                                        changes=[f"LABEL {LABEL_IMAGE}={image.digest}"])
        image_id = _imported_id(reply)
    finally:
        tar.stdout.close()
        err = tar.stderr.read().decode(errors="replace").strip()
        status = tar.wait()
    if status != 0 or image_id is None:
        if image_id is not None:
            _remove_quietly(client, image_id)
        raise ImageError(f"docker: importing {image.rootfs} failed (tar status {status}): "
                         f"{err[-500:] or reply!r}")
    client.api.tag(image_id, REPOSITORY, image.digest)
    return image_id


def _imported_id(reply: object) -> str | None:
    """The image id from the import API's reply (JSON lines: {"status": "sha256:..."} or {"error": ...})."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    found = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("error"):
            raise ImageError(f"docker: the import failed: {data['error']}")
        status = data.get("status") if isinstance(data, dict) else None
        if isinstance(status, str) and status.startswith("sha256:"):
            found = status
    return found


def _remove_quietly(client: Any, ref: str) -> bool:
    import docker.errors

    try:
        client.images.remove(ref, noprune=False)
        return True
    except docker.errors.APIError:
        return False


def remove_stale(client: Any, cached: set[str]) -> list[str]:
    """isolab images whose hash is no longer in the image cache (`cached`: the digests there), and untagged
    remains of failed imports. An image whose rootfs is still cached stays: another run or worktree on this
    host may be using that recipe, and removing its tag would make the two re-import in turn. (Docker
    refuses to remove an image a container still uses; that one stays too.)"""
    removed = []
    for found in client.images.list(all=True, filters={"label": LABEL_IMAGE}):
        tags = [t for t in found.tags if t.startswith(f"{REPOSITORY}:")]
        stale = [t for t in tags if t.split(":", 1)[1] not in cached]
        if tags and not stale:
            continue
        for ref in stale or [found.id]:
            if _remove_quietly(client, ref):
                removed.append(f"docker image {ref}")
    return removed


def cached_digests(store: ImageStore | None = None) -> set[str]:
    return {image.digest for image in (store or ImageStore()).list()}
