"""Plain-Python training and model code. Nothing under ``core`` may import Django."""
