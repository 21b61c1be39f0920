"""What the training tests train on, all made here: a tiny checkpoint, source datasets in their official layouts, an
SRE/HRE export, a phase-1 audio folder, and the command-line overrides that point each recipe at them."""

from __future__ import annotations

import shutil
from pathlib import Path

from dataset_scripts import export_to_hub_layout, records_to_dataset_dict, validate_records
from omni_emotion.synthetic import media as media_factory

RECIPES = Path(__file__).parents[1] / "recipes"
DFEW_TRAIN = {1: 1, 2: 4, 3: 2, 4: 1, 5: 3, 6: 4}  # clip number -> DFEW label id (1-7)
DFEW_TEST = {7: 7, 8: 1}
MAFW_TRAIN = {1: "anger", 2: "helplessness", 3: "happiness", 4: "neutral"}
MAFW_TEST = {5: "sadness"}


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)


def write_sources(root: Path) -> dict[str, Path]:
    """DFEW and MAFW (fold 1) in their official layouts; every clip is the same 1 s video of a moving face."""
    clip = root / "face.mp4"
    media_factory.write_clip(clip, seconds=1.0, width=160, height=120)
    data = clip.read_bytes()
    dfew, mafw = root / "DFEW", root / "MAFW"
    for split, labels in (("train", DFEW_TRAIN), ("test", DFEW_TEST)):
        rows = "".join(f"{number},{label}\n" for number, label in labels.items())
        _write(dfew / f"EmoLabel_DataSplit/{split}(single-labeled)/set_1.csv", "video_name,label\n" + rows)
        for number in labels:
            _write(dfew / f"Clip/original/{number:05d}.mp4", data)
    for split, labels in (("train", MAFW_TRAIN), ("test", MAFW_TEST)):
        rows = "".join(f"{number:05d}.mp4 {label}\n" for number, label in labels.items())
        _write(mafw / f"Train & Test Set/single/no_caption/set_1/{split}.txt", rows)
        for number in labels:
            _write(mafw / f"data/clips/{number:05d}.mp4", data)
    return {"DFEW": dfew, "MAFW": mafw}


def write_mer24(root: Path, clip: Path) -> Path:
    """MER2024's labelled layout with two clips, one of them (sample_00000005) an EMER evaluation clip."""
    names = ("sample_00000001", "sample_00000005")
    _write(root / "label-disdim.csv", "name,discrete,valence\n" + "".join(f"{n},happy,1.0\n" for n in names))
    for name in names:
        _write(root / f"video-labeled/{name}.mp4", clip.read_bytes())
    return root


def write_annotations(folder: Path, sre_clips=(1, 2, 3, 4), hre_clips=(5, 6)) -> Path:
    """An SRE/HRE export over DFEW clips (by default its fold-1 training clips)."""

    def record(number: int, words: list[str]) -> dict:
        return {
            "id": f"DFEW/{number:05d}",
            "video": f"Clip/original/{number:05d}.mp4",
            "source": "DFEW",
            "label": "happy",
            "open_vocabulary": words,
            "reasoning": "She smiles widely and her voice is bright.",
            "intensity": None,
            "review_score": 7.0,
            "split": "train",
        }

    sre = validate_records([record(number, ["happy", "relaxed"]) for number in sre_clips])
    hre = validate_records([record(number, ["joyful"]) for number in hre_clips])
    configs = {"sre": records_to_dataset_dict(sre), "hre": records_to_dataset_dict(hre)}
    return export_to_hub_layout(configs, folder)


def write_audio_folder(folder: Path, rows: int = 6) -> Path:
    """A CommonVoice-like audiofolder: wav files and `metadata.csv` with `file_name` and `sentence`."""
    folder.mkdir(parents=True)
    lines = ["file_name,sentence"]
    for index in range(rows):
        media_factory.write_wav(folder / f"clip_{index}.wav", seconds=0.5 + 0.25 * index)
        lines.append(f"clip_{index}.wav,Sentence number {index}.")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def write_evaluation_clips(path: Path) -> Path:
    path.write_text("name\nsample_00000005\n")
    return path


def overrides(checkpoint: Path, output_dir: Path, data: dict[str, Path], **fields) -> list[str]:
    """Command-line overrides that point a recipe at the test data and make it a short CPU run."""
    import json

    sources = {"DFEW": str(data["DFEW"]), "MAFW": str(data["MAFW"])}
    values = {
        "model_name_or_path": str(checkpoint),
        "output_dir": str(output_dir),
        "dtype": "float32",
        "use_cpu": "true",
        "bf16": "false",
        "max_steps": "2",
        "per_device_train_batch_size": "2",
        "gradient_accumulation_steps": "1",
        "dataloader_num_workers": "0",
        "preprocessing_num_proc": "1",
        "save_strategy": "no",
        "logging_steps": "1",
        "report_to": "none",
        "sources": json.dumps(sources),
        "video_roots": json.dumps(sources),
        "annotations": str(data["annotations"]),
        "evaluation_clips": str(data["evaluation_clips"]),
        "lora_r": "4",
        "lora_alpha": "8",
    }
    values.update({key: str(value) for key, value in fields.items()})
    arguments = []
    for key, value in values.items():
        arguments += [f"--{key}", value]
    return arguments


def phase1_recipe(folder: Path, audio: Path) -> Path:
    """recipes/phase1_audio.yaml with its Hub audio sources replaced by the local test folder (a list of mappings
    cannot be given on the command line)."""
    import yaml

    recipe = yaml.safe_load((RECIPES / "phase1_audio.yaml").read_text())
    recipe["audio_sources"] = [{"name": "speech", "path": str(audio), "task": "asr", "weight": 1.0}]
    path = folder / "phase1_audio.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
