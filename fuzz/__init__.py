"""Coverage-guided fuzz targets (atheris); see README.md here."""
