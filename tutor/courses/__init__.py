"""Courses: import, export and services shared by runs and learners."""
