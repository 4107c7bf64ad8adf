"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class PipelineError(Exception):
    """A problem the user can fix (bad input, missing artifact, ...). str(err) is the whole message."""


class ArtifactBusyError(PipelineError):
    """Another process is writing the same artifact right now."""
