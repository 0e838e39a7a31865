"""Import a course: a JSONL file, a built-in pack, or a BIG-bench multiple-choice task."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tutor.core.courses.course import CourseError
from tutor.core.courses.formats import CourseImportError, import_bigbench, parse_course_jsonl
from tutor.core.courses.packs import PACKS, load_pack
from tutor.courses import services


class Command(BaseCommand):
    help = (
        "Import a course from a JSONL file (--file), a built-in pack (--pack arithmetic|counting) or a "
        "BIG-bench multiple-choice JSON file (--bigbench). Nothing is imported if any line is bad."
    )

    def add_arguments(self, parser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--file", type=Path, help="course JSONL (course, skill and exercise lines)")
        source.add_argument("--pack", choices=sorted(PACKS), help="a built-in generated course")
        source.add_argument("--bigbench", type=Path, help="a BIG-bench task JSON (multiple choice)")
        parser.add_argument("--seed", type=int, default=0, help="seed for packs and BIG-bench splits")
        parser.add_argument("--key", help="course key for --bigbench (default: the file name)")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="replace a course with the same key (and its "
            "learners' enrolments); refused when the course has teaching runs",
        )

    def handle(
        self,
        *args,
        file: Path | None,
        pack: str | None,
        bigbench: Path | None,
        seed: int,
        key: str | None,
        replace: bool,
        **options,
    ) -> None:
        try:
            if file is not None:
                course, source = parse_course_jsonl(_read(file)), str(file)
            elif pack is not None:
                course, source = load_pack(pack, seed=seed), f"pack:{pack} seed={seed}"
            else:
                if not bigbench.is_file():
                    raise CommandError(f"{bigbench}: no such file")
                slug = key or bigbench.stem.replace("_", "-")
                course = import_bigbench(
                    bigbench, course_key=slug, skill_key=slug, skill_name=bigbench.stem, seed=seed
                )
                source = str(bigbench)
            row = services.course_save(course=course, source=source, replace=replace)
        except CourseImportError as exc:
            lines = "\n".join(f"  line {n}: {reason}" for n, reason in exc.errors[:50])
            raise CommandError(f"{len(exc.errors)} bad line(s); nothing was imported:\n{lines}") from exc
        except (CourseError, services.CourseExists, services.CourseInUse) as exc:
            raise CommandError(str(exc)) from exc
        counts = {split: len(course.split(split)) for split in ("train", "probe", "exam")}
        self.stdout.write(
            f"Imported {row.key}: {len(course.skills)} skills, "
            + ", ".join(f"{n} {split}" for split, n in counts.items())
            + " exercises"
            + services.replaced_note(row)
        )


def _read(path: Path) -> str:
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
