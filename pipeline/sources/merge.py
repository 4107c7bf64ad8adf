"""Combine several annotation sources into one record per image, joined on the image name.

    images, counts = merge_sources([h5_source, csv_source], join="left")

Rules (the earlier source on the command line wins a disagreement; every disagreement is counted):
- images: "left" keeps the first source's images, "outer" every image of every source;
- people come from the first source that has people for the image; a later source's people that match
  them (same joints within MATCH_TOLERANCE_PX) fill what the first lacks (center, scale, head box,
  occlusion flags); a later person that is one of them (same_person) annotated differently is a conflict;
  any other later person is another person of the image, counted, not added;
- activity comes from the first source that labels the image; a different label later is a conflict
  (labels cut at 100 characters, as the .mat and CSV cut them, equal their full form);
- split: a source's "val" refines another's "train" (MPII's val split is carved out of its train
  images); train/val against test is a conflict; "unknown" never overrides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.records import OCCLUDED, VISIBLE, ImageAnnotation, Person, known
from pipeline.sources.base import SourceData

# The hourglass h5 rounds neck/head to whole pixels, the CSV keeps 4 decimals: 1 px apart at most.
MATCH_TOLERANCE_PX = 2.0
JOINS = ("left", "outer")  # which images a join keeps: the first source's, or every source's
ACTIVITY_CUT = 100  # characters at which the official .mat cuts act_name


def same_person(p: Person, q: Person) -> bool:
    """Two annotations of one person: most shared joints (the median) at the same place (MATCH_TOLERANCE_PX).

    A box overlap is not enough: neighbours in a crowd overlap, and their joints are still tens of pixels
    apart. One person re-annotated keeps most joints and differs in a few (moved, added, dropped).
    """
    both = known(p.keypoints) & known(q.keypoints)
    if both.sum() < 3:
        return False
    dist = np.hypot(*(p.keypoints[both, :2] - q.keypoints[both, :2]).T)
    return bool(np.median(dist) <= MATCH_TOLERANCE_PX)


def same_activity(a: str, b: str) -> bool:
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    return len(short) == ACTIVITY_CUT and long_.startswith(short)


def people_match(p: Person, q: Person, tol: float = MATCH_TOLERANCE_PX) -> bool:
    """Same person in two sources: the same joints annotated, each within tol pixels."""
    kp, kq = known(p.keypoints), known(q.keypoints)
    if not kp.any() or not np.array_equal(kp, kq):
        return False
    diff = np.abs(p.keypoints[kp, :2] - q.keypoints[kq, :2])
    return bool((diff <= tol).all())


def _copy(p: Person) -> Person:
    return Person(keypoints=p.keypoints.copy(), center=p.center, scale=p.scale, head_box=p.head_box)


def _fill(p: Person, q: Person, q_has_occlusion: bool, p_has_occlusion: bool, counts: Counter) -> None:
    """Complete the chosen person p with what the matching person q of another source knows."""
    if p.center is None and q.center is not None:
        p.center = q.center
        counts["filled:center"] += 1
    if p.scale is None and q.scale is not None:
        p.scale = q.scale
        counts["filled:scale"] += 1
    if p.head_box is None and q.head_box is not None:
        p.head_box = q.head_box
        counts["filled:head_box"] += 1
    if q_has_occlusion and not p_has_occlusion:
        occluded = (q.keypoints[:, 2] == OCCLUDED) & (p.keypoints[:, 2] == VISIBLE)
        if occluded.any():
            p.keypoints = p.keypoints.copy()
            p.keypoints[occluded, 2] = OCCLUDED
            counts["filled:occlusion_flags"] += int(occluded.sum())


def _merge_split(splits: list[str], counts: Counter) -> str:
    named = [s for s in splits if s != "unknown"]
    if not named:
        return "unknown"
    kinds = set(named)
    if kinds == {"train", "val"}:
        counts["split:val_refines_train"] += 1
        return "val"
    if len(kinds) > 1:
        counts["conflict:split"] += 1
    return named[0]


def merge_sources(
    sources: Sequence[SourceData], *, join: str = "left"
) -> tuple[list[ImageAnnotation], Counter]:
    """One ImageAnnotation per image and the join counters (a lone source's records are returned as they are;
    joined ones are new records, and the sources are left unchanged)."""
    if join not in JOINS:
        raise ValueError(f"join must be 'left' or 'outer', not {join!r}")
    counts: Counter = Counter()
    if join == "left":
        names = list(sources[0].images)
        for src in sources[1:]:
            extra = sum(1 for n in src.images if n not in sources[0].images)
            if extra:
                counts[f"not_in_first_source:{src.path.name}"] += extra
    else:
        names = list(dict.fromkeys(n for src in sources for n in src.images))
    if len(sources) == 1:  # nothing to join: the records as read
        return [sources[0].images[n] for n in names], counts

    out = []
    for name in names:
        present = [(s, s.images[name]) for s in sources if name in s.images]
        for s, _ in present[1:]:
            counts[f"images_found_in:{s.path.name}"] += 1

        people_src = next(((s, a) for s, a in present if s.has_people and a.people), None)
        people = [_copy(p) for p in people_src[1].people] if people_src else []
        if people_src:
            for s, a in present:
                if s is people_src[0] or not s.has_people or not a.people:
                    continue
                for q in a.people:
                    match = next((p for p in people if people_match(p, q)), None)
                    if match is not None:
                        _fill(match, q, s.has_occlusion, people_src[0].has_occlusion, counts)
                    elif any(same_person(p, q) for p in people):
                        counts["conflict:people"] += 1  # the same person, annotated differently
                    else:
                        # Another person of the image (valid.h5 and the CSV hold different people of
                        # some images); not added, since it cannot be told from a re-annotation.
                        counts["people_only_in_later_source"] += 1

        labelled = [(s, a) for s, a in present if s.has_activity and a.activity is not None]
        activity = category = activity_id = None
        if labelled:
            act_src, first = labelled[0]
            activity, category, activity_id = first.activity, first.category, first.activity_id
            if people_src and act_src is not people_src[0]:
                counts["activity_from_other_source"] += 1
            for _, a in labelled[1:]:
                if not same_activity(a.activity, activity) or (
                    a.category and category and a.category != category
                ):
                    counts["conflict:activity"] += 1
                else:
                    if len(a.activity) > len(activity):  # keep the uncut name when one source has it
                        activity = a.activity
                    activity_id = activity_id if activity_id is not None else a.activity_id
                    category = category or a.category

        out.append(
            ImageAnnotation(
                image=name,
                split=_merge_split([a.split for _, a in present], counts),
                activity=activity,
                category=category,
                activity_id=activity_id,
                people=people,
            )
        )
    return out, counts
