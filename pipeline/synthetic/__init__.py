"""The embedded synthetic sample: articulated people with exactly known MPII keypoints, in the real formats.

    from pipeline.synthetic import SampleConfig, generate_sample
    layout = generate_sample(SampleConfig(seed=0, images=1500), Path("sample"))

poses.py (activity library, forward kinematics) -> render.py (PIL drawing) -> scene.py (one image) ->
sample.py (the MPII .mat + JPEGs, a Stanford 40-style action set, a FER2013-style body-state set).
"""

from pipeline.synthetic.poses import ACTIVITIES, ACTIVITY_BY_NAME, BODY_STATES, Activity
from pipeline.synthetic.sample import SampleConfig, SampleLayout, generate_sample, stanford_name
from pipeline.synthetic.scene import SceneSpec, render_scene

__all__ = [
    "ACTIVITIES",
    "ACTIVITY_BY_NAME",
    "BODY_STATES",
    "Activity",
    "SampleConfig",
    "SampleLayout",
    "SceneSpec",
    "generate_sample",
    "render_scene",
    "stanford_name",
]
