"""The hostile-input suite's fixtures; the helpers live in ``tests/hostile_support.py`` (a
module name of its own: another ``conftest`` module is on the path when the whole suite
runs)."""

from hostile_support import ckpt, digit_folder, image_folder, models, run_copy, work  # noqa: F401
