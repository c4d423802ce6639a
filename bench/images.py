"""`python -m bench image ...`: build, list and remove the shared root filesystem, with progress."""

from __future__ import annotations

import time

from rich.console import Console

from runtime.image.build import ensure_image
from runtime.image.recipe import Recipe
from runtime.image.store import Image, ImageStore


def build(console: Console, rebuild: bool = False) -> Image:
    recipe = Recipe()
    store = ImageStore()
    started = time.monotonic()
    cached = None if rebuild else store.get(recipe.digest())
    if cached:
        console.print(f"image {cached.digest} (cached) at {cached.path}")
        return cached
    console.print(f"building image {recipe.digest()} in {store.root} (several minutes the first time)")
    with console.status("debootstrap", spinner="dots") as status:
        def progress(message: str) -> None:
            status.update(message[:100])
            if not message.startswith(("Retrieving", "Validating", "Extracting", "Unpacking", "Configuring")):
                console.print(f"  {message}")

        image = ensure_image(recipe, store, rebuild=rebuild, progress=progress)
    console.print(f"image {image.digest} built in {time.monotonic() - started:.0f} s at {image.path}")
    return image


def list_images(console: Console) -> None:
    store = ImageStore()
    current = Recipe().digest()
    images = store.list()
    if not images:
        console.print(f"no images in {store.root}")
    for image in images:
        mark = "current recipe" if image.digest == current else "older recipe"
        console.print(f"{image.digest}  kernel {image.kernel_version}  built {image.manifest.get('built_at')}  "
                      f"({mark})  {image.path}")


def remove(console: Console, digests: list[str]) -> None:
    store = ImageStore()
    targets = [i.digest for i in store.list()] if digests == ["all"] else digests
    for digest in targets:
        store.remove(digest)
        console.print(f"removed image {digest}")
