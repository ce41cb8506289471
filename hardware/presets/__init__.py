"""Data files (YAML) shipped with the package: chips/ and systems/."""
