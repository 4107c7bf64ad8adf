"""Annotation sources: one reader per format, each returning a SourceData (base.py).

    from pipeline.sources.formats import read_source, sniff_format
    src = read_source(Path("valid.h5"))                   # any supported format, detected from the content

formats.py detects a file's format and calls its reader: mpii_mat.py (the official .mat), mpii_json.py
(mmpose/HRNet), mpii_h5.py (stacked hourglass), mpii_csv.py (mpii_dataset.csv), coco_keypoints.py
(COCO-format keypoints: COCO, CrowdPose, AP-10K, ...). merge.py joins several MPII sources on the image
name, coco_captions.py joins COCO captions on the image id, mpii_mat_writer.py writes the .mat (the
synthetic sample).
Nothing is imported here, so that a reader's heavy library (scipy, h5py, pandas) loads only with it.
"""
