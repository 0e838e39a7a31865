"""Where tests find files outside the repository."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# External benchmark extracts (../shared/data beside the checkout; absent on some machines).
BIGBENCH_DIR = ROOT.parent / "shared" / "data" / "bigbench"
