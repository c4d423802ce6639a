"""The shared root filesystem: its recipe, the cache that holds built images, and the build itself."""
