"""The admin of the three rooms; Django's autodiscovery imports this module."""

from tutor.courses import admin as courses_admin  # noqa: F401
from tutor.learn import admin as learn_admin  # noqa: F401
from tutor.runs import admin as runs_admin  # noqa: F401
