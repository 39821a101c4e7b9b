"""Where the tests find things, independent of how deep a test file sits under tests/."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]  # tests/
ROOT = TESTS.parent  # the checkout
FIXTURES = TESTS / "fixtures"  # files made by the reference's own code, committed with the tests
CONFIGS = ROOT / "recipes" / "configs"
SHARED = ROOT.parent / "shared"  # the shared folder beside the checkout (reference material, audiocraft's files)
SHARED_FIXTURES = SHARED / "fixtures"
RELEASED_CONFIGS = SHARED / "reference" / "released_configs"
