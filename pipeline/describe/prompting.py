"""Prompt templates: one folder per family under prompts/, rendered in a sandbox with StrictUndefined.

    tpl = load_template("grounded")                 # or a user's folder: load_template("my/prompts")
    ctx = image_context(pose_facts(annotation))    # the variables every template sees (below)
    messages = tpl.messages(ctx)                    # [{"role": "system", ...}, {"role": "user", ...}]

A family folder holds system.j2 + user.j2 (LLM prompts) or description.j2 (the rules describer writes the
description itself), and optionally defaults.json: the family's sampling settings (paper: the reference's
temperature 0.5, max_tokens 512, frequency_penalty 1.0), used where the command line sets none. The
folder's content hash goes into every row's cache key, so editing a template re-runs exactly the rows it
changes.

Template variables: image, activity, category (None when unlabelled), num_people, keypoint_names (the
image skeleton's joints, in its order), people (list of {index, position (left/center/right among the
people, None when alone), position_rank (1 for the first person at that position), label (the source's
category, e.g. the species; None for MPII), noun (label, else the subject), center, scale, keypoints
([x, y] per joint, -1 for unknown), known_joints, limb_joints ({limb: known joints of its 3}; {} for
animals), facts (pipeline.geometry.PersonFacts: state, torso, head, limbs[name].bend/raised/above_head/...,
arms_crossed, feet_apart; for animal and custom skeletons pipeline.animals.AnimalFacts: facing, visible,
hidden)}), input_json (compact JSON: activity, count, people with center, scale, keypoints),
reference_json (the reference code's user message, below), and what differs per skeleton: skeleton (its
name), human (whether it maps onto MPII), subject ("person", "animal", "instance") and subjects (its
plural, also the JSON key of the instances: "people" for people), body_parts (the skeleton's part names),
groups (list of {noun, plural, count} per kind of instance, "two zebras"). Crowd regions are not among
the people (pipeline.instances). Everything about the instances comes from the image's PoseFacts
(pipeline.facts), computed once per image and shared with the gate.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from pipeline.animals import parts
from pipeline.describe.config import SAMPLING_FIELDS
from pipeline.errors import PipelineError
from pipeline.facts import PoseFacts
from pipeline.geometry import PersonFacts
from pipeline.instances import plural

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"
DEFAULTS_FILE = "defaults.json"


def template_hash(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes: any edit to the family changes it."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _check_contained(folder: Path) -> None:
    """Refuse a family folder holding a link that resolves outside it (it would render or hash that file)."""
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder):
        for entry in (*dirnames, *filenames):
            path = Path(dirpath, entry)
            if not path.resolve().is_relative_to(root):
                raise PipelineError(
                    f"--template {folder}: {path.relative_to(folder)} links outside the folder "
                    f"(to {path.resolve()}); copy the file in instead"
                )


class _ContainedLoader(jinja2.FileSystemLoader):
    """FileSystemLoader that also refuses a file resolving outside its folder (a link made after loading)."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        if not Path(filename).resolve().is_relative_to(Path(self.searchpath[0]).resolve()):
            raise jinja2.TemplateNotFound(f"{template} (links outside {self.searchpath[0]})")
        return source, filename, uptodate


@dataclass(slots=True)
class TemplateSet:
    name: str
    folder: Path
    hash: str
    env: SandboxedEnvironment
    defaults: dict[str, Any]  # the family's sampling settings (defaults.json), {} when it has none

    @property
    def is_rules(self) -> bool:
        return (self.folder / "description.j2").is_file()

    def _render(self, file: str, ctx: dict[str, Any]) -> str:
        try:
            return self.env.get_template(file).render(**ctx).strip()
        except jinja2.TemplateError as err:
            where = f"{self.folder / file}" + (f":{err.lineno}" if getattr(err, "lineno", None) else "")
            raise PipelineError(
                f"template {where}: {type(err).__name__}: {err} (image {ctx.get('image')})"
            ) from None

    def messages(self, ctx: dict[str, Any]) -> list[dict[str, str]]:
        out = []
        if (self.folder / "system.j2").is_file():
            out.append({"role": "system", "content": self._render("system.j2", ctx)})
        out.append({"role": "user", "content": self._render("user.j2", ctx)})
        return out

    def description(self, ctx: dict[str, Any]) -> str:
        return self._render("description.j2", ctx)


def load_template(spec: str | Path) -> TemplateSet:
    """A family name under prompts/ or a folder path; checks the files it needs are there."""
    folder = Path(spec).expanduser()
    if not folder.is_dir() and (PROMPTS_DIR / str(spec)).is_dir():
        folder = PROMPTS_DIR / str(spec)
    if not folder.is_dir():
        raise PipelineError(f"--template {spec}: no such folder (and no family {spec!r} in {PROMPTS_DIR})")
    if not (folder / "description.j2").is_file() and not (folder / "user.j2").is_file():
        raise PipelineError(f"--template {folder}: needs user.j2 (+ optional system.j2) or description.j2")
    _check_contained(folder)
    env = SandboxedEnvironment(
        loader=_ContainedLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["tojson"] = lambda v: json.dumps(v, separators=(", ", ": "))
    return TemplateSet(
        name=folder.resolve().name,
        folder=folder.resolve(),
        hash=template_hash(folder),
        env=env,
        defaults=_read_defaults(folder / DEFAULTS_FILE),
    )


def _read_defaults(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        defaults = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err})") from None
    unknown = sorted(set(defaults) - set(SAMPLING_FIELDS)) if isinstance(defaults, dict) else None
    if unknown is None or unknown:
        raise PipelineError(f"{path}: expected an object with keys among {', '.join(SAMPLING_FIELDS)}")
    return defaults


def _num(v: float) -> float | int:
    """Pixel coordinates as the paper wrote them: integers when whole, one decimal otherwise."""
    r = round(float(v), 1)
    return int(r) if r == int(r) else r


def image_context(facts: PoseFacts) -> dict[str, Any]:
    """Every variable a template may use for one image (see the module docstring)."""
    ann, sk = facts.annotation, facts.skeleton
    people, int_keypoints = [], []
    for i, (person, f) in enumerate(zip(facts.instances, facts.people, strict=True)):
        joints = list(zip(person.keypoints.tolist(), facts.known[i].tolist(), strict=True))
        keypoints = [[_num(x), _num(y)] if ok else [-1, -1] for (x, y, _), ok in joints]
        int_keypoints.append([[int(x), int(y)] if ok else [-1, -1] for (x, y, _), ok in joints])
        people.append(
            {
                "index": i + 1,
                "position": facts.positions[i],
                "position_rank": facts.position_ranks[i],
                "label": person.label,
                "noun": facts.nouns[i],
                "center": None if person.center is None else [_num(c) for c in person.center],
                "scale": None if person.scale is None else round(float(person.scale), 3),
                "keypoints": keypoints,
                "known_joints": int(facts.known[i].sum()),
                "limb_joints": {n: limb.known_joints for n, limb in f.limbs.items()}
                if isinstance(f, PersonFacts)
                else {},
                "facts": f,
            }
        )
    # The source's category of each instance (the species) when it names one; MPII names none, so its
    # messages stay the paper's.
    label = [{"label": p["label"]} if p["label"] else {} for p in people]
    paper_input = {
        "activity": ann.activity,
        "count": len(people),
        plural(sk.subject): [
            lab | {"center": p["center"], "scale": p["scale"], "keypoints": p["keypoints"]}
            for p, lab in zip(people, label, strict=True)
        ],
    }
    # The reference's user message (src/captioning/convert_dataset.py, generate_captions.py of the paper's
    # code): "<category>, <activity>", 0-based ids, keypoints truncated to int, [-1, -1] when not annotated.
    reference_input = {
        "activity": ", ".join(a for a in (ann.category, ann.activity) if a) or None,
        "count": len(people),
        "istrain": int(ann.split == "train"),
        plural(sk.subject): [
            {"id": i} | lab | {"center": p["center"], "scale": p["scale"], "kpts": kpts}
            for i, (p, lab, kpts) in enumerate(zip(people, label, int_keypoints, strict=True))
        ],
    }
    return {
        "image": ann.image,
        "activity": ann.activity,
        "category": ann.category,
        "num_people": len(people),
        "keypoint_names": list(sk.joints),
        "people": people,
        "input_json": json.dumps(paper_input, separators=(",", ":")),
        "reference_json": json.dumps(reference_input),
        "skeleton": sk.name,
        "human": sk.human,
        "subject": sk.subject,
        "subjects": plural(sk.subject),
        "body_parts": list(parts(sk)),
        "groups": [{"noun": n, "plural": plural(n), "count": c} for n, c in facts.groups],
    }
