"""Adapters for the seven source datasets: each official annotation layout in, schema rows out.

An adapter only parses its dataset's layout into `SourceClip`s; one mechanism (`read_source`) turns
them into records of docs/architecture.md ("Data"), checks every clip is on disk, and builds a `DatasetDict`
with one split per official split. Each reader's docstring says where its layout comes from.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from datasets import DatasetDict

from .catalog import SOURCES, SourceInfo, get_source
from .hub import records_to_dataset_dict
from .records import validate_records
from .videos import OnMissing, missing_ids


class AnnotationError(ValueError):
    """A source annotation that does not follow the official layout; names the file and line."""


@dataclass(frozen=True)
class SourceClip:
    """One clip as an annotation file describes it.

    `clip_id` is unique within the source (and within one fold for DFEW/MAFW); `video` is a POSIX path
    relative to the source root: a video file, or a folder of frames where the source ships frames.
    """

    clip_id: str
    video: str
    label: str
    split: str
    intensity: str | None = None


ClipReader = Callable[..., Iterator[SourceClip]]
_READERS: dict[str, ClipReader] = {}


def _reads(source: str) -> Callable[[ClipReader], ClipReader]:
    def register(reader: ClipReader) -> ClipReader:
        _READERS[get_source(source).name] = reader
        return reader

    return register


def _class(info: SourceInfo, raw: str, where: str) -> str:
    label = raw.strip().lower()
    if label not in info.classes:
        raise AnnotationError(
            f"{where}: label {raw!r} is not a {info.name} class ({', '.join(info.classes)})"
        )
    return label


def _table(path: Path, delimiter: str | None = ",") -> Iterator[tuple[str, list[str]]]:
    """(file:line, fields) of each non-blank line; `delimiter=None` splits on runs of whitespace."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Annotation file {path} not found; is the root the folder the official archive unpacks to?"
        )
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if delimiter is None:
            for number, line in enumerate(handle, start=1):
                if fields := line.split():
                    yield f"{path}:{number}", fields
        else:
            reader = csv.reader(handle, delimiter=delimiter)
            for fields in reader:
                if any(field.strip() for field in fields):
                    yield f"{path}:{reader.line_num}", [field.strip() for field in fields]


def _records(path: Path, required: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """(file:line, {column: value}) of each row of a CSV file with a header naming `required` columns."""
    rows = _table(path)
    header_where, header = next(rows, (str(path), []))
    if not set(required) <= set(header):
        raise AnnotationError(
            f"{header_where}: expected a header with columns {', '.join(required)}, got {header}"
        )
    for where, fields in rows:
        if len(fields) < len(header):
            raise AnnotationError(
                f"{where}: expected {len(header)} fields ({', '.join(header)}), got {fields}"
            )
        yield where, dict(zip(header, fields, strict=False))


def _check_fold(fold: int, source: str) -> None:
    if fold not in range(1, 6):
        raise ValueError(f"{source} has official folds 1-5, got fold={fold}")


@_reads("DFEW")
def read_dfew(
    root: Path, fold: int = 1, video_template: str = "Clip/original/{clip_id}.mp4"
) -> Iterator[SourceClip]:
    """DFEW, one of its 5 official folds.

    Layout of the official release (https://dfew-dataset.github.io/, as read by the MAE-DFER and
    DFER-CLIP preprocessing scripts): `EmoLabel_DataSplit/{train,test}(single-labeled)/set_{fold}.csv`
    with columns `video_name,label`, labels 1-7 (happy, sad, neutral, angry, surprise, disgust, fear),
    and the clips in `Clip/original/{video_name:05d}.mp4`. For the extracted frames pass e.g.
    `video_template="Clip/clip_224x224/{clip_id}"`.
    """
    _check_fold(fold, "DFEW")
    classes = SOURCES["DFEW"].classes
    for split in ("train", "test"):
        path = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
        for where, row in _records(path, ("video_name", "label")):
            try:
                clip_id, code = f"{int(row['video_name']):05d}", int(row["label"])
            except ValueError:
                raise AnnotationError(f"{where}: expected '<clip number>,<label 1-7>', got {row}") from None
            if not 1 <= code <= len(classes):
                raise AnnotationError(f"{where}: label {code} is outside DFEW's 1-{len(classes)}")
            yield SourceClip(clip_id, video_template.format(clip_id=clip_id), classes[code - 1], split)


@_reads("MAFW")
def read_mafw(
    root: Path, fold: int = 1, video_template: str = "data/clips/{clip_id}.mp4"
) -> Iterator[SourceClip]:
    """MAFW single-expression set, one of its 5 official folds.

    Layout of the official release (https://mafw-database.github.io/MAFW/, as read by the MAE-DFER
    preprocessing): `Train & Test Set/single/no_caption/set_{fold}/{train,test}.txt`, one
    `<clip>.mp4 <class name>` per line, and the clips in `data/clips/`.
    """
    _check_fold(fold, "MAFW")
    info = SOURCES["MAFW"]
    for split in ("train", "test"):
        path = root / "Train & Test Set" / "single" / "no_caption" / f"set_{fold}" / f"{split}.txt"
        for where, fields in _table(path, delimiter=None):
            if len(fields) != 2:
                raise AnnotationError(f"{where}: expected '<clip>.mp4 <class>', got {' '.join(fields)!r}")
            clip_id = Path(fields[0]).stem
            yield SourceClip(
                clip_id, video_template.format(clip_id=clip_id), _class(info, fields[1], where), split
            )


@_reads("FERV39K")
def read_ferv39k(root: Path, video_template: str = "2_ClipsforFaceCrop/{clip_id}") -> Iterator[SourceClip]:
    """FERV39K, its official train/test split over all scenes.

    Layout of the official release (https://github.com/wangyanckxx/FERV39k, as read by the FERV39k
    loaders of CLIPER and S4D): `4_setups/All_scenes/{train,test}_All.csv`, one
    `<Scene>/<Class>/<clip> <Class>` per line, and each clip a folder of face-crop frames under
    `2_ClipsforFaceCrop/`. A first line without a clip path is taken as a header.
    """
    info = SOURCES["FERV39K"]
    for split in ("train", "test"):
        path = root / "4_setups" / "All_scenes" / f"{split}_All.csv"
        for index, (where, fields) in enumerate(_table(path, delimiter=None)):
            if index == 0 and "/" not in fields[0]:
                continue
            if len(fields) != 2:
                raise AnnotationError(
                    f"{where}: expected '<Scene>/<Class>/<clip> <Class>', got {' '.join(fields)!r}"
                )
            clip_id = fields[0]
            yield SourceClip(
                clip_id, video_template.format(clip_id=clip_id), _class(info, fields[1], where), split
            )


@_reads("CAER")
def read_caer(root: Path, extensions: tuple[str, ...] = (".avi", ".mp4")) -> Iterator[SourceClip]:
    """CAER, its official train/validation/test split.

    Layout of the official release (https://caer-dataset.github.io/): the folder is the annotation,
    `{train,validation,test}/<Class>/<clip>.avi` with classes Anger, Disgust, Fear, Happy, Neutral,
    Sad, Surprise.
    """
    info = SOURCES["CAER"]
    for split in ("train", "validation", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(
                f"CAER split folder {split_dir} not found; expected {root}/<split>/<Class>/*.avi"
            )
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label = _class(info, class_dir.name, str(class_dir))
            for clip in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in extensions):
                relative = clip.relative_to(root).as_posix()
                yield SourceClip(relative.rsplit(".", 1)[0], relative, label, split)


def _quadrant(valence: float, arousal: float, neutral_band: float) -> str:
    if abs(valence) < neutral_band and abs(arousal) < neutral_band:
        return "neutral"
    if valence >= 0:
        return "excited" if arousal >= 0 else "relaxed"
    return "distressed" if arousal >= 0 else "depressed"


@_reads("AFEW-VA")
def read_afew_va(root: Path, neutral_band: float = 2.0) -> Iterator[SourceClip]:
    """AFEW-VA, all 600 clips as one `train` split (it has no official split).

    Layout of the official release (https://ibug.doc.ic.ac.uk/resources/afew-va-database/): one
    folder per clip, `<NNN>/` holding the frames `00000.png, ...` and `<NNN>.json` whose `frames`
    map each frame to its `valence` and `arousal` in [-10, 10]. The coarse label is the quadrant of
    the clip's mean valence and arousal, neutral when both lie within `neutral_band` of zero (ours).
    """
    clip_dirs = sorted(p for p in root.iterdir() if p.is_dir() and (p / f"{p.name}.json").is_file())
    if not clip_dirs:
        raise FileNotFoundError(f"No AFEW-VA clip folders (<NNN>/<NNN>.json) found under {root}")
    for clip_dir in clip_dirs:
        path = clip_dir / f"{clip_dir.name}.json"
        try:
            frames = json.loads(path.read_text(encoding="utf-8"))["frames"]
            valence = fmean(float(frame["valence"]) for frame in frames.values())
            arousal = fmean(float(frame["arousal"]) for frame in frames.values())
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise AnnotationError(
                f"{path}: expected {{'frames': {{'<frame>': {{'valence': v, 'arousal': a, ...}}}}}} ({error!r})"
            ) from None
        yield SourceClip(clip_dir.name, clip_dir.name, _quadrant(valence, arousal, neutral_band), "train")


@_reads("MER24")
def read_mer24(root: Path, video_template: str = "video-labeled/{clip_id}.mp4") -> Iterator[SourceClip]:
    """MER2024's labelled training set as one `train` split.

    Layout of the official release (MERTools, MER2024 README and its preprocessing): `label-disdim.csv`
    with columns `name,discrete,valence` and the clips in `video-labeled/<name>.mp4`.
    """
    info = SOURCES["MER24"]
    for where, row in _records(root / "label-disdim.csv", ("name", "discrete")):
        clip_id = row["name"]
        label = _class(info, row["discrete"], where)
        yield SourceClip(clip_id, video_template.format(clip_id=clip_id), label, "train")


_RAVDESS_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")


@_reads("RAVDESS")
def read_ravdess(root: Path, modality: str = "01") -> Iterator[SourceClip]:
    """RAVDESS audio-visual clips as one `train` split (it has no official split).

    Layout of the official release (https://zenodo.org/records/1188976, its README): `Actor_<NN>/`
    folders of `MM-VV-EE-II-SS-RR-AA.mp4`, coding modality (01 audio-video, 02 video only), vocal
    channel, emotion 01-08, intensity (01 normal, 02 strong), statement, repetition and actor. Only
    files of `modality` are read, so a folder that also holds the silent copies yields each clip once.
    """
    classes = SOURCES["RAVDESS"].classes
    clips = sorted(root.glob("Actor_*/*.mp4"))
    if not clips:
        raise FileNotFoundError(f"No RAVDESS clips (Actor_<NN>/<code>.mp4) found under {root}")
    for clip in clips:
        match = _RAVDESS_NAME.fullmatch(clip.stem)
        if match is None:
            raise AnnotationError(f"{clip}: expected a 7-part name such as 01-01-03-02-01-01-12.mp4")
        file_modality, _, emotion, intensity = match.group(1, 2, 3, 4)
        if not 1 <= int(emotion) <= len(classes) or intensity not in ("01", "02"):
            raise AnnotationError(
                f"{clip}: emotion code {emotion} or intensity code {intensity} is out of range"
            )
        if file_modality == modality:
            strength = "normal" if intensity == "01" else "strong"
            yield SourceClip(
                clip.stem, clip.relative_to(root).as_posix(), classes[int(emotion) - 1], "train", strength
            )


def read_source(
    source: str, root: str | Path, *, on_missing: OnMissing = "raise", **options: Any
) -> DatasetDict:
    """Read one source dataset from its official layout under `root` into a `DatasetDict` of records.

    `options` go to the source's reader (e.g. `fold=3` for DFEW and MAFW, `video_template` where the
    clips were extracted elsewhere). Rows carry paths relative to `root`; every clip is checked on
    disk and missing ones raise `MissingVideosError` (or, with `on_missing="drop"`, are logged).
    """
    info = get_source(source)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{info.name} root {root} is not a directory")
    records = [
        {
            "id": f"{info.name}/{clip.clip_id}",
            "video": clip.video,
            "source": info.name,
            "label": clip.label,
            "open_vocabulary": [],
            "reasoning": "",
            "intensity": clip.intensity,
            "review_score": None,
            "split": clip.split,
        }
        for clip in _READERS[info.name](root, **options)
    ]
    records = validate_records(records, origin=f"{info.name} at {root}")
    missing = missing_ids(records, {info.name: root}, on_missing)
    return records_to_dataset_dict(record for record in records if record["id"] not in missing)
