import os

import hypothesis
import pytest


def test_ci_profile_is_derandomised_by_default():
    profile = os.environ.get("HYPOTHESIS_PROFILE")
    if profile not in (None, "ci"):
        pytest.skip(f"HYPOTHESIS_PROFILE={profile} chosen explicitly")
    current = hypothesis.settings()
    assert current.derandomize is True
    assert current.database is None
    assert current.deadline is None
