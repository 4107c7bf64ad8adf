"""The records that flow between stages (their artifacts' readers are tested in test_artifacts.py)."""

from __future__ import annotations

import numpy as np

from pipeline.records import empty_keypoints, keypoint_box, keypoint_boxes


def test_keypoint_boxes_use_only_known_or_masked_joints():
    kps = np.stack([empty_keypoints(), empty_keypoints()])
    kps[0, [1, 4]] = [[4, 6, 2], [-2, 9, 1]]
    boxes, valid = keypoint_boxes(kps)
    assert valid.tolist() == [True, False]
    assert boxes.tolist() == [[-2, 6, 4, 9], [0, 0, 0, 0]]
    mask = np.zeros((2, 16), bool)
    mask[0, 1] = True
    assert keypoint_boxes(kps, mask)[0][0].tolist() == [4, 6, 4, 6]
    assert keypoint_box(kps[0]) == (-2.0, 6.0, 4.0, 9.0) and keypoint_box(kps[1]) is None
