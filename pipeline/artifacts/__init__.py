"""The artifacts' contracts, one module per kind: its file names, schema, statuses, a checked typed reader
and its writer. Stages, training and evaluation import them from here and nowhere else.

    from pipeline.artifacts import annotations, descriptions
    rows = annotations.read(store, "mpii")
    table = descriptions.read(store, "rules", columns=descriptions.REQUIRED)

Nothing is imported here, so reading annotations does not load what datasets or runs need.
"""
