"""The three model families. ``FAMILY_CLASSES[name]`` is the ZooModel subclass of a family."""
