"""Human learners: tutoring sessions, mastery, reviews, feedback."""
