"""Data files (YAML) shipped with the package."""
