"""Plain-Python tutoring of human learners: prompts, knowledge tracing, reviews, next item."""
