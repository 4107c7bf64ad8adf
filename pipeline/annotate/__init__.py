"""annotate: keypoints from a pose model for a folder of images that has none.

    from pipeline.annotate.stage import AnnotateConfig, annotate
    summary = annotate(AnnotateConfig(images=Path("photos"), name="photos"), store)

stage.py runs the stage, models.py lists the models (data), backends.py builds them (blazepose.py: MediaPipe,
keypoint_rcnn.py: torchvision), prediction.py is what they return, accuracy.py measures them (COCOeval).
Nothing is imported here, so that the CLI lists the models without loading torch or mediapipe.
"""
