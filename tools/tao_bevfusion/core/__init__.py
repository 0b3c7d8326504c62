"""The bottom layer: errors, settings from the environment, on-disk names, host paths, bounded YAML.

Nothing in core imports any other part of the package.
"""
