import os

from hypothesis import settings

os.environ.setdefault("MUJOCO_GL", "egl")

# Property tests are derandomised by default so CI runs the same examples every time and a red
# build is reproducible. HYPOTHESIS_PROFILE=dev restores random exploration for local bug hunting.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
