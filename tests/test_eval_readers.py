"""Dataset readers on real files from ../shared/data (FER+, FairFace, Kinetics-400, UTKFace, FER2013) and on
small files written here in the native formats of the datasets that have none there (EMOTIC .mat and CSV,
LAGENDA CSV, Stanford 40 XML, FER2013 CSV, Kinetics clips made with PyAV)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evaluation.data import EvalDataset, LoadError, decode_middle_frame, load_image
from evaluation.readers import READERS, DataAbsent, ReaderInput
from evaluation.readers import ferplus as ferplus_reader
from evaluation.readers import utkface as utk_reader


def _jpg(path: Path, size=(40, 30), color=(120, 60, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_clip(path: Path, seconds: float = 2.0, fps: int = 10, size: int = 32) -> Path:
    """A tiny MPEG-4 clip whose frame i is uniformly gray at level 10 * i (so a frame's time is readable)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(
                np.full((size, size, 3), min(250, 10 * i), np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---- FER2013 --------------------------------------------------------------------------------------------
def test_fer2013_image_folder_real_faces(shared_data):
    root = shared_data / "fer2013" / "images_msambare_layout"
    out = READERS["fer2013"](ReaderInput(root=root, split="test"))
    assert len(out.samples) == 14 and not out.skipped
    assert Counter(s.labels["emotion"] for s in out.samples) == {
        c: 2 for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    }
    assert all(Path(s.source).parent.name == s.labels["emotion"] for s in out.samples)
    image = load_image(out.samples[0], None)
    assert image.mode == "RGB" and image.size == (48, 48)
    with pytest.raises(DataAbsent) as err:
        READERS["fer2013"](ReaderInput(root=root, split="train"))
    assert str(root / "train") in err.value.looked_for


def test_fer2013_kaggle_csv(tmp_path):
    rng = np.random.default_rng(0)
    pix = lambda: " ".join(map(str, rng.integers(0, 256, 48 * 48)))  # noqa: E731
    rows = [
        ("0", pix(), "Training"),
        ("3", pix(), "Training"),
        ("6", pix(), "PublicTest"),
        ("9", pix(), "Training"),
        ("2", "1 2 3", "Training"),
        ("5", pix(), "PrivateTest"),
    ]
    # icml_face_data.csv spells the header with spaces
    pd.DataFrame(rows, columns=["emotion", " pixels", " Usage"]).to_csv(
        tmp_path / "icml_face_data.csv", index=False
    )
    out = READERS["fer2013"](ReaderInput(root=tmp_path, split="train"))
    assert [s.labels["emotion"] for s in out.samples] == ["angry", "happy"]
    assert out.skipped == {"unknown label": 1, "bad pixels": 1}
    assert load_image(out.samples[0], None).size == (48, 48)
    assert len(READERS["fer2013"](ReaderInput(root=tmp_path, split="test")).samples) == 1


# ---- FER+ -----------------------------------------------------------------------------------------------
def _expected_ferplus(votes: pd.DataFrame) -> tuple[pd.Series, int]:
    """Independent majority vote with pandas: idxmax over the 8 emotions of the NF == 0 rows."""
    emotions = list(ferplus_reader.EMOTIONS)
    kept = votes[(votes["NF"] == 0) & (votes[emotions].sum(axis=1) > 0)]
    return kept[emotions].idxmax(axis=1), int((votes["NF"] > 0).sum())


def test_ferplus_label_csv_real_file(shared_data, tmp_path):
    folder = tmp_path / "FER2013Test"
    folder.mkdir()
    os.symlink(shared_data / "ferplus" / "FER2013Test" / "label.csv", folder / "label.csv")
    raw = pd.read_csv(folder / "label.csv", header=None, names=["name", "box", *ferplus_reader.VOTE_COLUMNS])
    expected, n_nf = _expected_ferplus(raw)
    present = raw.loc[expected.index[:6], "name"].tolist()
    for name in present:
        _jpg(folder / name, (48, 48))
    out = READERS["ferplus"](ReaderInput(root=tmp_path, split="test"))
    assert len(raw) == 3573 and n_nf > 0
    assert out.skipped["not a face (NF > 0)"] == n_nf
    assert len(out.samples) == 6 and out.skipped["image missing"] == len(expected) - 6
    assert len(out.samples) + sum(out.skipped.values()) == len(raw)  # every row accounted for
    assert [s.labels["emotion"] for s in out.samples] == expected.iloc[:6].tolist()


def test_ferplus_new_csv_joined_with_fer2013_pixels(shared_data, tmp_path):
    new = pd.read_csv(shared_data / "ferplus" / "fer2013new.csv", nrows=400)
    assert list(new.columns) == ["Usage", "Image name", *ferplus_reader.VOTE_COLUMNS]
    (tmp_path / "ferplus").mkdir()
    new.to_csv(tmp_path / "ferplus" / "fer2013new.csv", index=False)  # the real file's first 400 rows
    pixels = " ".join(["128"] * 48 * 48)
    emotions = np.arange(len(new)) % 7
    pd.DataFrame({"emotion": emotions, "pixels": pixels, "Usage": new["Usage"]}).to_csv(
        tmp_path / "fer2013.csv", index=False
    )
    out = READERS["ferplus"](
        ReaderInput(root=tmp_path / "ferplus", split="train", paths={"fer2013": tmp_path})
    )
    expected, n_nf = _expected_ferplus(new)
    assert [s.labels["emotion"] for s in out.samples] == expected.tolist()
    assert out.skipped.get("not a face (NF > 0)", 0) == n_nf
    assert isinstance(out.samples[0].source, np.ndarray)
    pd.DataFrame({"emotion": emotions[:10], "pixels": pixels, "Usage": new["Usage"][:10]}).to_csv(
        tmp_path / "fer2013.csv", index=False
    )
    with pytest.raises(ValueError, match="row by row"):
        READERS["ferplus"](ReaderInput(root=tmp_path / "ferplus", split="train", paths={"fer2013": tmp_path}))


def test_ferplus_majority_vote_rules():
    votes = np.array(
        [
            [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # neutral
            [0, 5, 5, 0, 0, 0, 0, 0, 0, 0],  # tie: first in column order (happiness)
            [6, 0, 0, 0, 0, 0, 0, 0, 0, 4],  # NF > 0
            [0, 0, 0, 0, 0, 0, 0, 0, 10, 0],
        ]
    )  # only "unknown"
    labels, reason = ferplus_reader.majority_labels(votes)
    assert labels.tolist() == [0, 1, -1, -1] and reason.tolist() == [0, 0, 1, 2]


# ---- FairFace -------------------------------------------------------------------------------------------
def test_fairface_real_labels(shared_data, tmp_path):
    os.symlink(shared_data / "fairface" / "fairface_label_val.csv", tmp_path / "fairface_label_val.csv")
    for n in (1, 2, 3):
        _jpg(tmp_path / "val" / f"{n}.jpg")
    out = READERS["fairface"](ReaderInput(root=tmp_path, split="val"))
    assert [s.labels["race"] for s in out.samples] == ["East Asian", "East Asian", "White"]
    assert [s.labels["age"] for s in out.samples] == ["3-9", "50-59", "30-39"]
    assert out.skipped == {"image missing": 10954 - 3}
    with pytest.raises(DataAbsent):
        READERS["fairface"](ReaderInput(root=tmp_path, split="train"))


# ---- UTKFace --------------------------------------------------------------------------------------------
def test_utkface_real_chips(shared_data):
    out = READERS["utkface"](ReaderInput(root=shared_data / "utkface", split="all"))
    assert len(out.samples) == 22 and out.skipped == {"malformed file name": 2}
    by_name = {s.name: s.labels for s in out.samples}
    assert by_name["1_0_4_20170103202401551.jpg.chip.jpg"] == {
        "age": "1",
        "age_group": "baby",
        "gender": "male",
        "race": "others",
    }
    assert by_name["46_1_2_20170109002726038.jpg.chip.jpg"]["age_group"] == "adult"
    assert by_name["9_0_2_20170110215518068.jpg.chip.jpg"]["age_group"] == "child"


def test_utkface_all_real_names(shared_data):
    names = (shared_data / "utkface" / "utkface_aligned_cropped_filenames.txt").read_text().splitlines()
    parsed = [utk_reader.parse_name(n) for n in names]
    malformed = [n for n, p in zip(names, parsed, strict=True) if p is None]
    assert len(names) == 23707 and len(malformed) == 5
    assert (
        "55_0_0_20170116232725357jpg.chip.jpg" in malformed
        and "24_0_1_20170116220224657 .jpg.chip.jpg" in malformed
    )
    races = Counter(p["race"] for p in parsed if p)
    assert races == {
        "white": 10077,
        "black": 4524,
        "asian": 3434,
        "indian": 3975,
        "others": 1692,
    }  # PROVENANCE.md


def test_utkface_name_list_restricts(shared_data, tmp_path):
    root = tmp_path / "utk"
    (root / "UTKFace").mkdir(parents=True)
    for p in sorted((shared_data / "utkface" / "images").iterdir())[:4]:
        os.symlink(p, root / "UTKFace" / p.name)
    listed = sorted(p.name for p in (root / "UTKFace").iterdir())[:2] + [
        "99_0_0_20170101000000000.jpg.chip.jpg"
    ]
    (root / "mine.txt").write_text("\n".join(listed) + "\n")
    out = READERS["utkface"](ReaderInput(root=root, split="mine"))
    assert sorted(s.name for s in out.samples) == listed[:2] and out.skipped == {"image missing": 1}


# ---- LAGENDA --------------------------------------------------------------------------------------------
def test_lagenda_csv_face_and_body(tmp_path):
    _jpg(tmp_path / "images" / "a.jpg", (100, 100))
    _jpg(tmp_path / "images" / "b.jpg", (100, 100))
    cols = [
        "img_name",
        "age",
        "gender",
        "face_x0",
        "face_y0",
        "face_x1",
        "face_y1",
        "person_x0",
        "person_y0",
        "person_x1",
        "person_y1",
    ]
    rows = [
        ["lagenda_benchmark_images/a.jpg", 8, "M", 10, 10, 30, 30, 0, 0, 60, 90],
        ["lagenda_benchmark_images/a.jpg", 17, "F", 40, 10, 60, 30, 30, 0, 90, 95],
        ["lagenda_benchmark_images/b.jpg", 45, "F", 5, 5, 20, 20, -1, -1, -1, -1],
        ["lagenda_benchmark_images/b.jpg", -1, "M", 5, 5, 20, 20, 0, 0, 50, 50],
        ["lagenda_benchmark_images/c.jpg", 33, "M", 5, 5, 20, 20, 0, 0, 50, 50],
    ]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "lagenda_annotation.csv", index=False)
    face = READERS["lagenda"](ReaderInput(root=tmp_path, split="all", options={"crop": "face"}))
    body = READERS["lagenda"](ReaderInput(root=tmp_path, split="all", options={"crop": "body"}))
    assert [s.labels["age_group"] for s in face.samples] == ["kid", "teenager"]
    assert face.skipped == body.skipped == {"missing value (-1)": 2, "image missing": 1}
    assert face.samples[0].box == (10, 10, 30, 30) and body.samples[1].box == (30, 0, 90, 95)
    assert load_image(body.samples[0], None).size == (60, 90)


# ---- Stanford 40 ----------------------------------------------------------------------------------------
def _voc(action: str, name: str, box=(5, 6, 30, 28)) -> str:
    return (
        f"<annotation><filename>{name}</filename><object><action>{action}</action><bndbox>"
        f"<xmax>{box[2]}</xmax><xmin>{box[0]}</xmin><ymax>{box[3]}</ymax><ymin>{box[1]}</ymin></bndbox>"
        "</object><size><depth>3</depth><height>30</height><width>40</width></size></annotation>"
    )


def write_stanford40(root: Path) -> None:
    (root / "ImageSplits").mkdir(parents=True)
    (root / "XMLAnnotations").mkdir()
    (root / "ImageSplits" / "actions.txt").write_text(
        "action_name\tnumber_of_images\nriding_a_horse\t2\napplauding\t3\n"
    )
    names = [
        "applauding_001.jpg",
        "riding_a_horse_001.jpg",
        "applauding_002.jpg",
        "applauding_003.jpg",
        "riding_a_horse_002.jpg",
    ]
    (root / "ImageSplits" / "test.txt").write_text("\n".join(names) + "\n")
    for name in names[:3]:
        _jpg(root / "JPEGImages" / name)
        (root / "XMLAnnotations" / name.replace(".jpg", ".xml")).write_text(
            _voc(name.rsplit("_", 1)[0], name)
        )
    (root / "XMLAnnotations" / "applauding_003.xml").write_text("<annotation><object>")  # broken
    _jpg(root / "JPEGImages" / "applauding_003.jpg")  # riding_a_horse_002 has neither image nor XML


def test_stanford40_layout(tmp_path):
    write_stanford40(tmp_path)
    out = READERS["stanford40"](ReaderInput(root=tmp_path, split="test"))
    assert out.classes == ("riding_a_horse", "applauding")
    assert [s.labels["action"] for s in out.samples] == ["applauding", "riding_a_horse", "applauding"]
    assert out.samples[0].box is None  # whole image, as the paper scores it
    assert out.skipped == {"bad annotation": 1, "annotation missing": 1}
    person = READERS["stanford40"](ReaderInput(root=tmp_path, split="test", options={"crop": "person"}))
    assert person.samples[0].box == (5.0, 6.0, 30.0, 28.0)


# ---- EMOTIC ---------------------------------------------------------------------------------------------
def _struct(rows: list[dict]) -> np.ndarray:
    """A 1xN MATLAB struct array, as scipy.io.savemat writes numpy structured arrays."""
    arr = np.empty((1, len(rows)), dtype=[(k, object) for k in rows[0]])
    for i, row in enumerate(rows):
        for k, v in row.items():
            arr[0, i][k] = v
    return arr


def _cell(values: list[str]) -> np.ndarray:
    arr = np.empty((1, len(values)), dtype=object)
    arr[0, :] = values
    return arr


def write_emotic_mat(path: Path) -> None:
    from scipy.io import savemat

    def person(box, cats, age, gender, test=False):
        cont = _struct([{"valence": 6.0, "arousal": 5.0, "dominance": np.nan}])
        if not test:
            return {
                "body_bbox": np.array([box], float),
                "annotations_categories": _struct([{"categories": _cell(cats)}]),
                "annotations_continuous": cont,
                "gender": gender,
                "age": age,
            }
        return {
            "body_bbox": np.array([box], float),
            "annotations_categories": _struct([{"categories": _cell(cats)}, {"categories": _cell(cats[:1])}]),
            "combined_categories": _cell(cats[::-1]),
            "annotations_continuous": cont,
            "combined_continuous": cont,
            "gender": gender,
            "age": age,
        }

    def image(name, folder, people):
        return {
            "filename": name,
            "folder": folder,
            "image_size": _struct([{"n_col": 80.0, "n_row": 60.0}]),
            "original_database": _struct([{"name": "mscoco"}]),
            "person": _struct(people),
        }

    train = [
        image(
            "a.jpg",
            "mscoco/images",
            [
                person([10, 5, 50, 55], ["Happiness", "Engagement"], "Adult", "Male"),
                person([0, 0, 20, 40], ["Fatigue"], "Kid", "Female"),
            ],
        ),
        image("b.jpg", "emodb_small/images", [person([1, 1, 30, 30], ["Peace"], "Teenager", "Male")]),
        image("gone.jpg", "mscoco/images", [person([1, 1, 30, 30], ["Pain"], "Adult", "Male")]),
    ]
    val = [
        image(
            "a.jpg", "mscoco/images", [person([10, 5, 50, 55], ["Anger", "Pain"], "Adult", "Male", test=True)]
        )
    ]
    savemat(path, {"train": _struct(train), "val": _struct(val)})


def test_emotic_mat_and_csv(tmp_path):
    _jpg(tmp_path / "emotic" / "mscoco" / "images" / "a.jpg", (80, 60))
    _jpg(tmp_path / "emotic" / "emodb_small" / "images" / "b.jpg", (80, 60))
    write_emotic_mat(tmp_path / "CVPR17_Annotations.mat")
    out = READERS["emotic"](ReaderInput(root=tmp_path, split="train"))
    assert [(s.labels["emotion"], s.labels["age"]) for s in out.samples] == [
        ("Happiness", "Adult"),
        ("Fatigue", "Kid"),
        ("Peace", "Teenager"),
    ]
    assert out.samples[0].labels["emotions"] == "Happiness|Engagement"
    assert out.samples[0].box == (10, 5, 50, 55) and out.skipped == {"image missing": 1}
    assert load_image(out.samples[0], None).size == (40, 50)
    val = READERS["emotic"](ReaderInput(root=tmp_path, split="val"))
    assert val.samples[0].labels["emotion"] == "Pain"  # combined categories for val/test

    (tmp_path / "CVPR17_Annotations.mat").unlink()
    (tmp_path / "emotic_pre").mkdir()
    pd.DataFrame(
        {
            "Index": [0, 1],
            "Folder": ["mscoco/images", "mscoco/images"],
            "Filename": ["a.jpg", "a.jpg"],
            "Image Size": ["[80, 60]"] * 2,
            "BBox": ["[10, 5, 50, 55]", "[0, 0, 20, 40]"],
            "Categorical_Labels": ["['Happiness', 'Engagement']", "['Fatigue']"],
            "Continuous_Labels": ["[6, 5, 4]"] * 2,
            "Gender": ["Male", "Female"],
            "Age": ["Adult", "Kid"],
        }
    ).to_csv(tmp_path / "emotic_pre" / "train.csv", index=False)
    csv = READERS["emotic"](ReaderInput(root=tmp_path, split="train"))
    assert [(s.labels["emotion"], s.labels["age"], s.box) for s in csv.samples] == [
        ("Happiness", "Adult", (10, 5, 50, 55)),
        ("Fatigue", "Kid", (0, 0, 20, 40)),
    ]


# ---- Kinetics-400 ---------------------------------------------------------------------------------------
def test_kinetics_real_csv_clips_and_decode(shared_data, tmp_path):
    root = tmp_path / "kinetics400"
    root.mkdir()
    os.symlink(shared_data / "kinetics400" / "kinetics-400_val.csv", root / "kinetics-400_val.csv")
    os.symlink(shared_data / "kinetics400" / "kinetics_classnames.json", root / "kinetics_classnames.json")
    csv = pd.read_csv(root / "kinetics-400_val.csv")
    picked = csv.iloc[[0, 1, 60]]
    stems = [f"{r.youtube_id}_{r.time_start:06d}_{r.time_end:06d}" for r in picked.itertuples()]
    write_clip(root / "val" / picked.iloc[0]["label"] / f"{stems[0]}.mp4")
    write_clip(root / "val" / f"{stems[1]}.mp4")
    (root / "val" / f"{stems[2]}.mp4").write_bytes(b"not a video at all" * 50)
    out = READERS["kinetics400"](ReaderInput(root=root, split="test"))
    assert out.split == "val" and out.notes  # no labelled test annotations here: val is scored
    assert len(out.classes) == 400 and out.classes[:2] == ("abseiling", "air drumming")
    assert set(out.classes) == set(csv["label"])
    assert [s.name for s in out.samples] == stems and out.skipped == {"clip missing": len(csv) - 3}
    assert out.samples[2].labels["action"] == picked.iloc[2]["label"]

    dataset = EvalDataset(out.samples, lambda im: np.asarray(im), tmp_path / "frames")
    frame, _, reason = dataset[0]
    assert reason == "" and abs(float(frame.mean()) - 100) < 20  # 2 s at 10 fps: the middle frame is #10
    assert dataset[2][2] == "clip decode failed"
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 1  # only the decoded clip left a frame
    os.remove(out.samples[0].source)  # the cached frame is used from now on
    assert dataset[0][2] == ""


def test_middle_of_segment_in_untrimmed_video(tmp_path):
    clip = write_clip(tmp_path / "full.mp4", seconds=2.4)
    early = np.asarray(decode_middle_frame(str(clip), (0.2, 0.6))).mean()  # a 0.4 s segment of a 2.4 s video
    assert abs(early - 40) < 20
    with pytest.raises((LoadError, Exception)):
        decode_middle_frame(str(tmp_path / "missing.mp4"), None)


def test_official_json_format(shared_data, tmp_path):
    os.symlink(
        shared_data / "kinetics400" / "official_json_excerpt" / "kinetics_val.json",
        tmp_path / "kinetics_val.json",
    )
    write_clip(tmp_path / "clips" / "--07WQ2iBlw_000001_000011.mp4")
    out = READERS["kinetics400"](ReaderInput(root=tmp_path, split="val"))
    assert [s.labels["action"] for s in out.samples] == ["javelin throw"] and out.skipped == {
        "clip missing": 1
    }
    assert json.loads((tmp_path / "kinetics_val.json").read_text())["--07WQ2iBlw"]["annotations"][
        "segment"
    ] == [1.0, 11.0]


def test_corrupt_and_missing_images_are_counted(tmp_path):
    good = _jpg(tmp_path / "ok.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    from evaluation.readers.base import Sample

    samples = [
        Sample(str(good), {}),
        Sample(str(bad), {}),
        Sample(str(tmp_path / "nope.jpg"), {}),
        Sample(str(good), {}, box=(50, 50, 60, 60)),
    ]
    dataset = EvalDataset(samples, lambda im: im.size)
    assert [dataset[i][2] for i in range(4)] == ["", "unreadable image", "image missing", "empty crop box"]

    def picky(image):
        raise ValueError("a transform that fails")

    assert EvalDataset(samples[:1], picky)[0][2] == "load failed (ValueError)"
