"""Plain-Python pedagogy code. Nothing under ``core`` may import Django."""
