import pytest

from render.dreamer.dream import DreamConfig, Dreamer
from render.dreamer.judge import judge
from render.dreamer.scenes import Prompt


@pytest.mark.slow
def test_builtin_priors_distil_a_held_out_prompt():
    """'a red cylinder' is a (colour, shape) pair the built-in priors never saw together; 300 steps
    of two-stage distillation (about 30 s on 2 cores) give a red cylinder by the independent judge."""
    d = Dreamer(DreamConfig(prompt="a red cylinder", steps=300, seed=0))
    d.run(progress=False)
    v = judge(d.model, Prompt("red", "cylinder"))
    assert v.match and v.per_view_match >= 0.75, v
