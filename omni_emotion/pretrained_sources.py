"""Where a pretrained part comes from: a local file or folder, or a Hub repository, checked fast.

`from_pretrained` and `hf_hub_download` retry an unreachable Hub for about 25 s a file and then say only that
they could not connect; a local path that does not exist is reported as an invalid repository id. The check here
names the part and the reason at once. It imports only `huggingface_hub`, so that the command line can run it
before importing torch and transformers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from huggingface_hub import get_hf_file_metadata, hf_hub_url, is_offline_mode, try_to_load_from_cache
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import httpx, validate_repo_id

logger = logging.getLogger(__name__)

# The released FaceXFormer checkpoint: its Hub repository and the file in it.
FACEXFORMER_REPO = "kartiknarayan/facexformer"
FACEXFORMER_FILENAME = "ckpts/model.pt"

# Names that can only be a file: a Hub id may contain dots, but these endings mean a weights file was meant.
_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


class CheckpointUnavailableError(OSError):
    """A pretrained part that is neither a file or folder here nor loadable from the Hub; the message names it,
    says why, and what to do."""


def looks_like_local_path(name_or_path: str) -> bool:
    """Whether `name_or_path` can only mean a file or folder here, not a Hub id: it exists; it starts with `./`,
    `../`, `/` or `~`, or is otherwise no valid `name` / `org/name` id (more than one `/`, a backslash);
    it ends like a weights file (`.pt`, `.safetensors`, ...); or it is `parent/name` and `parent/` exists here."""
    path = Path(name_or_path).expanduser()
    if path.exists() or name_or_path.startswith(("~", ".")) or path.is_absolute():
        return True
    if name_or_path.lower().endswith(_WEIGHT_FILE_SUFFIXES):
        return True
    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        return True
    return path.parent != Path(".") and path.parent.is_dir()


def check_pretrained_source(name_or_path: str, what: str, filename: str = "config.json") -> dict[str, Any]:
    """Checks, fast, that a pretrained part can be loaded, and returns the `from_pretrained` keyword arguments
    to load it with: `{}`, or `{"local_files_only": True}` when the Hub cannot be used but its cached copy can.

    A local path is checked for existence. A Hub id costs one request for `filename`, without retries (whereas
    `from_pretrained` retries each file for about 25 s before giving up); with `HF_HUB_OFFLINE` set, none.

    Args:
        name_or_path: a Hub id (`org/name`) or a local file or folder.
        what: what the part is, for the messages (e.g. "Whisper checkpoint").
        filename: a file that the Hub repository must hold.

    Raises:
        CheckpointUnavailableError: the local path does not exist; the id is not cached and `HF_HUB_OFFLINE` is
            set; the Hub has no such repository (or it is gated); or the Hub cannot be reached and the part is
            not cached. The message names the part and says what to do.
    """
    if looks_like_local_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise CheckpointUnavailableError(
                f"The {what} {name_or_path!r} does not exist: there is no file or folder {str(path.absolute())!r}. "
                "Give an existing path, or a Hub repository id such as 'org/name'."
            )
        return {}
    cached = isinstance(try_to_load_from_cache(name_or_path, filename), str)
    if is_offline_mode():
        if cached:
            return {"local_files_only": True}
        raise CheckpointUnavailableError(
            f"The {what} {name_or_path!r} is neither a local file or folder nor in the local Hugging Face "
            "cache, and HF_HUB_OFFLINE is set, so it cannot be downloaded. Unset HF_HUB_OFFLINE where the Hub "
            "can be reached to download it once, or give the path of a local copy."
        )
    try:
        get_hf_file_metadata(hf_hub_url(name_or_path, filename))
    except GatedRepoError:
        raise CheckpointUnavailableError(
            f"The {what} {name_or_path!r} is a gated Hub repository: accept its terms at "
            f"https://huggingface.co/{name_or_path} and log in (`hf auth login`)."
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointUnavailableError(
            f"The {what} {name_or_path!r} is neither a local file or folder nor a Hub repository: check the "
            "spelling (a private repository also needs `hf auth login`)."
        ) from None
    except RemoteEntryNotFoundError:
        raise CheckpointUnavailableError(
            f"The Hub repository {name_or_path!r} has no {filename}: it is not a {what}."
        ) from None
    except (OfflineModeIsEnabled, httpx.TransportError, HfHubHTTPError) as error:
        if cached:
            logger.warning(
                "Could not reach the Hugging Face Hub for %s (%s); loading the copy in the local cache.",
                name_or_path,
                error,
            )
            return {"local_files_only": True}
        raise CheckpointUnavailableError(
            f"Could not reach the Hugging Face Hub to download the {what} {name_or_path!r} "
            f"({type(error).__name__}: {error}); no network may be available (nor is it a local file or "
            f"folder). Connect, or download it where there is a network (`hf download {name_or_path}`) and give "
            "its folder, or set HF_HUB_OFFLINE=1 to use the local cache alone."
        ) from None
    return {}


def check_assembly_sources(
    llava_onevision: str, whisper: str | None, facexformer: str | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """[`check_pretrained_source`] for each part that `omni_emotion.assembly.assemble` loads (None: not loaded);
    returns the `from_pretrained` keyword arguments of each, in the same order."""
    return (
        check_pretrained_source(llava_onevision, "LLaVA-OneVision checkpoint"),
        {} if whisper is None else check_pretrained_source(whisper, "Whisper checkpoint"),
        {}
        if facexformer is None
        else check_pretrained_source(facexformer, "FaceXFormer checkpoint", FACEXFORMER_FILENAME),
    )
