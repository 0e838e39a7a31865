"""Plain-Python courses: the course model, file formats, grading and the built-in packs."""
