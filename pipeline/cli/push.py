"""`focus-pipeline push`: publish a finished run to a Hugging Face Hub model repo (open_clip's layout).

    focus-pipeline push --run focusclip --repo user/focusclip-mpii [--private]

The token comes from HF_TOKEN (or `hf auth login`); open_clip then loads the model with
`open_clip.create_model_and_transforms("hf-hub:user/focusclip-mpii")`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.artifacts.runs import RunMeta
from pipeline.cli.app import app, state


@app.command("push")
def _push(
    *,
    run: Annotated[str, typer.Option("--run", help="The runs/<name> artifact to publish.")],
    repo: Annotated[str, typer.Option("--repo", metavar="REPO_ID", help="Hub model repo, e.g. user/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
) -> None:
    """Publish a run (its open_clip export and a model card) to a Hugging Face Hub model repo."""
    from pipeline import hub
    from training.publish import push_run

    token = hub.hub_token(repo, flag="--repo")
    RunMeta.read(state.store, run)  # a one-line error for a run that is not in the store, or not a run
    typer.echo(f"runs/{run} -> {push_run(state.store, run, repo, token=token, private=private)}")
