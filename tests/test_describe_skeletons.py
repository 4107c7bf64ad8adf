"""describe beyond MPII: prompts, the rules describer and the gate on the real COCO, CrowdPose and AP-10K
files (read by the test stand-in tests/coco_stand_in.py), and the MPII renderings pinned byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from test_describe_rules import csv_annotations, h5_annotations

from pipeline.describe.prompting import image_context, load_template
from pipeline.describe.rules import rules_description

# SHA-256 over the renderings of 40 single-person CSV images + 20 multi-person validation images, computed
# on main (11e42ac) before prompts learned other skeletons: MPII prompts and rules text must not move a byte.
MPII_RENDERINGS = {
    "paper": "7b198d97e7cf074911ed7be7809a916a21b82c0eeae00374f2e78c08cd148d2d",
    "grounded": "6c4907e69d5811b756f709aabc346c879f7995fd604b34b364220c0c7c4d1545",
    "rules": "fb224f4591664b0b7027f4259d91b522f750745b50bdc9f3ff241caa215cf1a9",
}


def mpii_rendering_hashes(shared_data: Path) -> dict[str, str]:
    rows = csv_annotations(shared_data, 40) + h5_annotations(shared_data, 20)
    out = {}
    for family in ("paper", "grounded"):
        tpl, h = load_template(family), hashlib.sha256()
        for ann in rows:
            for message in tpl.messages(image_context(ann, with_facts=tpl.uses_facts)):
                h.update(json.dumps(message, sort_keys=True).encode() + b"\n")
        out[family] = h.hexdigest()
    tpl, h = load_template("rules"), hashlib.sha256()
    for ann in rows:
        h.update(rules_description(tpl, image_context(ann)).encode() + b"\n")
    out["rules"] = h.hexdigest()
    return out


def test_mpii_renderings_are_unchanged(shared_data):
    assert mpii_rendering_hashes(shared_data) == MPII_RENDERINGS
