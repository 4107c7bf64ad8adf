"""Publishing to the Hugging Face Hub: the one place that checks a repo id, finds the token and uploads.

    token = hub_token("user/name", flag="--push-to-hub")      # before hours of work, not after
    url = upload(folder, "user/name", kind="dataset", token=token, files=["README.md", "data/*.parquet"],
                 replace=["data/*.parquet"], resume_hint="`hf upload ...`")
    url = push_dataset(store.path("datasets", name), "user/name", token=token)   # a built dataset

Network failures are huggingface_hub's own (it honours HTTPS_PROXY and HF_ENDPOINT); any of them leaves the
local folder untouched and the error names the exact command that retries the upload.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


def hub_token(repo_id: str, *, flag: str) -> str:
    """Check the repo id ("user/name") and find a token (HF_TOKEN, or the one `hf auth login` stored)."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise PipelineError(f"{flag} {repo_id!r}: expected a repo id like 'user/name'")
    from huggingface_hub import get_token  # ~1 s to import, and every CLI command imports this module

    token = get_token()
    if not token:
        raise PipelineError(f"{flag} {repo_id}: no Hugging Face token; set HF_TOKEN (a write token)")
    return token


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def upload(
    folder: Path,
    repo_id: str,
    *,
    kind: Literal["dataset", "model"],
    token: str,
    files: list[str],
    replace: list[str],
    resume_hint: str,
    private: bool = False,
    kept: Path | None = None,
) -> str:
    """Upload the `files` patterns of folder to a Hub repo in one commit; returns the repo's URL.

    Files of the repo that match `replace` and are not part of this upload are deleted in the same commit
    (a stale shard left from an earlier push would break the dataset's split sizes). kept: where the user
    finds what was to be pushed when folder is a temporary copy of it (errors name it, not the copy).
    """
    keep = f"the {kind} is intact at {kept or folder}; push it later with {resume_hint}"
    if offline():
        raise PipelineError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set, nothing was uploaded; {keep}")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    from huggingface_hub import HfApi  # (as above: only a push needs it)

    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type=kind, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type=kind,
            folder_path=folder,
            allow_patterns=files,
            delete_patterns=replace,  # only files not re-uploaded here are deleted
            commit_message=f"focus-pipeline: {folder.name}",
        )
    # huggingface_hub raises its HTTP errors, httpx transport errors or OSError; all mean "not pushed".
    except Exception as err:  # noqa: BLE001
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PipelineError(f"pushing to {repo_id} failed: {msg}; {keep}") from None
    url = f"{endpoint}/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
    log.info("pushed %s -> %s", folder, url)
    return url


def push_dataset(path: Path, repo_id: str, *, token: str, private: bool = False) -> str:
    """Upload README.md and data/ of a built dataset to a Hub dataset repo; returns its URL. Shards the repo
    holds from an earlier push that are not part of this build are deleted in the same commit."""
    hint = (
        f"`hf upload {repo_id} {path} . --repo-type dataset --exclude meta.json --exclude skipped.jsonl "
        f"--delete 'data/*.parquet'`"
    )
    return upload(
        path,
        repo_id,
        kind="dataset",
        token=token,
        files=["README.md", "data/*.parquet"],
        replace=["data/*.parquet"],
        resume_hint=hint,
        private=private,
    )
