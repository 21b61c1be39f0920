"""Emotion-word parsing and the emotion-wheel mapping of MER2025 / AffectGPT, for the `emer_ov` metric.

The wheel resources (five wheels, the synonym table and the word-form table) come from the public
MERTools repository at a pinned revision. Their licence allows non-commercial use only, so they are never
shipped with this code: they are downloaded and checked against the sha256 sums below, or read from a
directory the caller names.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

WHEEL_SOURCE_URL = (
    "https://raw.githubusercontent.com/zeroQiaoba/MERTools/89120b780ab18b28349f0e37dcc12b8cc253cb02/"
    "MER2025/MER2025_Track23/emotion_wheel/"
)
WHEEL_DIR_ENV = "OMNI_EMOTION_WHEEL_DIR"
WHEEL_SHA256 = {
    "format.csv": "ba6de7d61db8e129d1d7ef8a2aae22a9e93a2c2e3e683e6f2735d04455f016f2",
    "synonym.xlsx": "23f81f9ab1d2418aaf96775304fb5dc52c62bb5d5ef652a97471d045fc9d2e29",
    "wheel1.xlsx": "e70485d354b82a7491ff24648273182a5f4f13f92c76e6b3e4f9033f5e6afcc1",
    "wheel2.xlsx": "acc001e076a8e60440361f58dd8c05ed900c4890c84bb7d8d1df93708a7d9c87",
    "wheel3.xlsx": "d62f30bf88c17c55876634cd088eacaef98278fc25457474364439872f9dbf83",
    "wheel4.xlsx": "660260561b7fe15550f3679a01e7c783608ce3403d4c28db0a88520f68d83aea",
    "wheel5.xlsx": "2dd4595b2cf8e7628ca06a416a8e38ac831614b244f23d1ae613dc34007649f1",
}
WHEEL_NAMES = tuple(f"wheel{index}" for index in range(1, 6))
LEVELS = ("level1", "level2")
_SYNONYM_RUNS = range(1, 9)
# The separators of the reference code's `string_to_list`: quotes and commas.
_WORD_SEPARATORS = re.compile(r"['\",]")


def split_words(value: str | Iterable[str]) -> list[str]:
    """Lower-cased, stripped emotion words of `"['happy', 'sad']"`, `"happy, sad"` or `["happy", "sad"]`.

    A string is split as MERTools' `string_to_list` does (one pair of outer brackets dropped, then split at
    quotes and commas), so that the strings its evaluation reads give the same words here.
    """
    if isinstance(value, str):
        text = value.strip()
        text = text[1:] if text.startswith("[") else text
        text = text[:-1] if text.endswith("]") else text
        items: Iterable[str] = _WORD_SEPARATORS.split(text)
    else:
        items = value
    words = (item.strip().lower() for item in items)
    return [word for word in words if word]


def verify_checksums(paths: Mapping[str, Path]) -> None:
    """Refuse resources that are missing or differ from the pinned ones: figures must be comparable."""
    for name, expected in WHEEL_SHA256.items():
        path = Path(paths[name])
        if not path.is_file():
            raise FileNotFoundError(
                f"Emotion-wheel file {name} not found at {path}. Download the seven files from "
                f"{WHEEL_SOURCE_URL} into one directory and pass it as `wheel_dir` (or ${WHEEL_DIR_ENV})."
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise ValueError(
                f"Emotion-wheel file {path} has sha256 {digest}, expected {expected}: it is not the pinned "
                f"MERTools file. Replace it with an unmodified copy of {WHEEL_SOURCE_URL}{name}."
            )


def resource_paths(directory: str | Path) -> dict[str, Path]:
    """The seven resource files expected in `directory`."""
    return {name: Path(directory) / name for name in WHEEL_SHA256}


def _read_sheet(path: Path) -> list[dict[str, str | None]]:
    """Rows of the first sheet of an xlsx file, keyed by the header row."""
    try:
        import openpyxl
    except ImportError as err:
        raise ImportError("The emotion-wheel grouping reads xlsx files: `pip install openpyxl`.") from err
    # From bytes: downloaded files are cached under hashed names, and openpyxl judges a path by its suffix.
    workbook = openpyxl.load_workbook(io.BytesIO(path.read_bytes()), read_only=True, data_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [str(cell).strip() for cell in next(rows)]
        return [dict(zip(header, row, strict=False)) for row in rows]
    finally:
        workbook.close()


def _read_wheel(path: Path) -> dict[str, dict[str, list[str]]]:
    """level1 -> level2 -> level3 words, in file order; a blank cell repeats the cell above."""
    tree: dict[str, dict[str, list[str]]] = {}
    current = {"level1": "", "level2": "", "level3": ""}
    for row in _read_sheet(path):
        for level in current:
            if row.get(level) is not None:
                current[level] = str(row[level]).lower().strip()
        tree.setdefault(current["level1"], {}).setdefault(current["level2"], []).append(current["level3"])
    return tree


def _cluster_map(tree: dict[str, dict[str, list[str]]], level: str) -> dict[str, str]:
    """Every word of one wheel -> its level-1 or level-2 cluster.

    Written in the reference code's order, so that a word found twice keeps the reference's (last) cluster;
    in level 2 a level-1 word goes to its alphabetically first level-2 child.
    """
    clusters: dict[str, str] = {}
    for level1, children in tree.items():
        clusters[level1] = level1 if level == "level1" else sorted(children)[0]
        for level2, level3_words in children.items():
            target = level1 if level == "level1" else level2
            clusters[level2] = target
            for level3 in level3_words:
                clusters[level3] = target
    return clusters


@dataclass
class EmotionWheels:
    """The MER2025 mapping: word form -> base words -> wheel words -> a wheel's level-1 or level-2 cluster."""

    base_words: dict[str, set[str]]
    wheel_words: dict[str, set[str]]
    clusters: dict[tuple[str, str], dict[str, str]]
    _candidates: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def cluster(self, word: str, wheel: str, level: str) -> str | None:
        """The cluster of `word` in one wheel and level, or None when it does not map (then it is dropped)."""
        if word not in self._candidates:
            bases = self.base_words.get(word, ())
            self._candidates[word] = sorted({w for base in bases for w in self.wheel_words.get(base, ())})
        clusters = self.clusters[wheel, level]
        return next((clusters[c] for c in self._candidates[word] if c in clusters), None)


def load_emotion_wheels(paths: Mapping[str, Path]) -> EmotionWheels:
    """Check the seven resource files against the pinned sums and build the mapping."""
    verify_checksums(paths)
    return _load_verified(tuple(sorted((name, str(path)) for name, path in paths.items())))


@functools.lru_cache(maxsize=4)
def _load_verified(paths: tuple[tuple[str, str], ...]) -> EmotionWheels:
    files = {name: Path(path) for name, path in paths}

    base_words: dict[str, set[str]] = {}
    with files["format.csv"].open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            base = row["name"]
            for form in [base, *split_words(row["format"] or "")]:
                base_words.setdefault(form, set()).add(base)

    wheel_words: dict[str, set[str]] = {}
    for row in _read_sheet(files["synonym.xlsx"]):
        for run in _SYNONYM_RUNS:
            word = str(row[f"word_run{run}"]).strip().lower()
            for synonym in [word, *split_words(str(row[f"synonym_run{run}"] or ""))]:
                wheel_words.setdefault(synonym, set()).add(word)

    clusters = {}
    for wheel in WHEEL_NAMES:
        tree = _read_wheel(files[f"{wheel}.xlsx"])
        for level in LEVELS:
            clusters[wheel, level] = _cluster_map(tree, level)
    return EmotionWheels(base_words=base_words, wheel_words=wheel_words, clusters=clusters)
