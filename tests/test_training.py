"""Training: what each phase trains, every recipe end to end on a tiny model, LoRA, resume, two processes, guards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import training_fixtures as tf
from safetensors.torch import load_file
from transformers import TrainerCallback

from dataset_scripts.leakage import LeakageError
from modeling_omni_emotion import OmniEmotionForConditionalGeneration
from omni_emotion.synthetic.tiny import tiny_config
from omni_emotion.training import (
    OmniEmotionScriptArguments,
    build_phase_dataset,
    row_masked_parameters,
    set_trainable,
    train,
)

REPOSITORY = Path(__file__).parents[1]
TOWERS = ("model.vision_tower.", "model.audio_tower.", "model.face_encoder.")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("training-data")
    found = tf.write_sources(root)
    found["annotations"] = tf.write_annotations(root / "annotations")
    found["audio"] = tf.write_audio_folder(root / "speech")
    found["evaluation_clips"] = tf.write_evaluation_clips(root / "emer_ov_names.csv")
    return found


def recipe_arguments(recipe: str, checkpoint: Path, output_dir: Path, data, **fields) -> list[str]:
    path = (
        tf.phase1_recipe(output_dir.parent, data["audio"])
        if recipe == "phase1_audio"
        else tf.RECIPES / f"{recipe}.yaml"
    )
    return [str(path), *tf.overrides(checkpoint, output_dir, data, **fields)]


def trainable_prefixes(model) -> set[str]:
    """The module paths (two levels deep) that hold trainable parameters."""
    return {".".join(name.split(".")[:2]) for name, p in model.named_parameters() if p.requires_grad}


FULL = {
    "model.multi_modal_projector",
    "model.audio_projector",
    "model.face_projector",
    "model.frame_embedding",
    "model.language_model",
    "lm_head.weight",
}


@pytest.mark.parametrize("fusion", ["clip_concat", "frame_concat", "frame_cross_attention"])
@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("audio_alignment", {"model.audio_projector", "model.language_model"}),  # + the embedding (rows only)
        ("face_alignment", {"model.face_projector", "model.language_model"}),
        ("instruction", FULL),
        ("finetune", FULL),
    ],
)
def test_trainable_parameters_follow_the_phase_table(phase, expected, fusion):
    model = OmniEmotionForConditionalGeneration(tiny_config(fusion=fusion))
    summary = set_trainable(model, phase)
    cross_attention = fusion == "frame_cross_attention" and phase != "audio_alignment"
    assert trainable_prefixes(model) == expected | (
        {"model.face_frame_attention"} if cross_attention else set()
    )
    if phase in ("audio_alignment", "face_alignment"):
        # The LLM is frozen but for its embedding matrix, whose gradient is masked to the modality's markers.
        trained_llm = [n for n, p in model.named_parameters() if p.requires_grad and "language_model" in n]
        assert trained_llm == ["model.language_model.embed_tokens.weight"]
        assert row_masked_parameters(model) == ["model.language_model.embed_tokens.weight"]
        assert len(summary.marker_token_ids) == 2
    else:
        assert row_masked_parameters(model) == []
    hidden = model.config.text_config.hidden_size
    masked = set(row_masked_parameters(model))
    full = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n not in masked)
    assert summary.trainable_parameters == full + len(summary.marker_token_ids) * hidden * len(masked)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(TOWERS))


def test_marker_rows_alone_receive_a_gradient_in_the_alignment_phases():
    model = OmniEmotionForConditionalGeneration(tiny_config())
    set_trainable(model, "audio_alignment")
    embeddings = model.get_input_embeddings()
    ids = torch.tensor([[model.config.au_start_token_id, 5, 6, model.config.au_end_token_id, 7]])
    model(input_ids=ids, labels=ids).loss.backward()
    rows = embeddings.weight.grad.abs().sum(-1).nonzero().flatten().tolist()
    assert rows == sorted([model.config.au_start_token_id, model.config.au_end_token_id])


def test_a_model_without_a_tower_skips_the_phase_that_aligns_it():
    with pytest.raises(ValueError, match="skip the audio-alignment phase"):
        set_trainable(
            OmniEmotionForConditionalGeneration(tiny_config(use_audio_tower=False)), "audio_alignment"
        )
    with pytest.raises(ValueError, match="skip the face-alignment phase"):
        set_trainable(
            OmniEmotionForConditionalGeneration(tiny_config(use_face_tower=False)), "face_alignment"
        )
    model = OmniEmotionForConditionalGeneration(tiny_config(use_face_tower=False))
    set_trainable(model, "instruction")
    assert trainable_prefixes(model) == FULL - {"model.face_projector"}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


PIPELINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline
    analyzer = pipeline("video-emotion-analysis", model=sys.argv[1], trust_remote_code=True, device="cpu")
    ours = ("omni_emotion", "dataset_scripts", "processing", "modeling_omni_emotion")
    assert not any(name.split(".")[0] in ours for name in sys.modules), "the package itself was imported"
    print(json.dumps(analyzer(sys.argv[2], max_new_tokens=4)))
    """
)


def assert_the_pipeline_runs_from(folder: Path, clip: Path, tmp_path: Path) -> None:
    """`pipeline("video-emotion-analysis", model=folder, trust_remote_code=True)` in a fresh interpreter, on the
    checkpoint's own code alone, answers with labels and reasoning."""
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["custom_pipelines"]["video-emotion-analysis"]["impl"]
        == "pipeline.VideoEmotionAnalysisPipeline"
    )
    result = _run(
        "",
        tmp_path,
        command=[sys.executable, "-c", PIPELINE_SCRIPT, str(folder), str(clip)],
        environment={"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.splitlines()[-1])
    assert isinstance(output["labels"], list) and isinstance(output["reasoning"], str)


@pytest.mark.parametrize(
    "recipe",
    [
        "phase1_audio",
        "phase2_face",
        "phase3_instruct",
        "phase3_instruct_lora",
        "finetune_dfew",
        "finetune_mafw",
    ],
)
def test_every_recipe_trains_a_few_steps_and_saves_a_loadable_checkpoint(recipe, checkpoint, data, tmp_path):
    output_dir = tmp_path / "out"
    train(recipe_arguments(recipe, checkpoint, output_dir, data, learning_rate=1e-2))

    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert (output_dir / "README.md").read_text().count("omni-emotion") >= 1
    AutoProcessor.from_pretrained(output_dir, trust_remote_code=True)
    AutoModelForImageTextToText.from_pretrained(output_dir, trust_remote_code=True)
    before, after = weights(checkpoint), weights(output_dir)
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert not any(key.startswith(TOWERS) for key in changed), "the encoders are frozen in every phase"
    if recipe == "phase1_audio":
        assert {key.split(".")[1] for key in changed} == {"audio_projector", "language_model"}
    if recipe == "phase2_face":
        assert {key.split(".")[1] for key in changed} == {"face_projector", "language_model"}
    if recipe in ("phase1_audio", "phase2_face"):
        embedding = "model.language_model.embed_tokens.weight"
        rows = (before[embedding] != after[embedding]).any(-1).nonzero().flatten().tolist()
        config = OmniEmotionForConditionalGeneration.config_class.from_pretrained(checkpoint)
        markers = ("au_start", "au_end") if recipe == "phase1_audio" else ("vi_start", "vi_end")
        assert rows == sorted(getattr(config, f"{name}_token_id") for name in markers)
        assert all(
            key.startswith(("model.audio_projector", "model.face_projector", embedding)) for key in changed
        )
    if recipe == "phase3_instruct_lora":
        assert (output_dir / "adapter" / "adapter_config.json").is_file()
        assert any(key.startswith("model.language_model.layers") for key in changed), (
            "merged LoRA changes the LLM"
        )
    assert (output_dir / "pipeline.py").is_file() and (output_dir / "emotion_answer.py").is_file()
    if recipe in ("finetune_dfew", "phase3_instruct_lora"):  # a fully trained and a LoRA-merged checkpoint
        assert_the_pipeline_runs_from(output_dir, data["DFEW"] / "Clip/original/00001.mp4", tmp_path)


class LossLog(TrainerCallback):
    def __init__(self):
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def test_the_loss_falls_when_overfitting_four_examples(checkpoint, data, tmp_path):
    log = LossLog()
    arguments = recipe_arguments(
        "finetune_dfew", checkpoint, tmp_path / "out", data,
        max_train_samples=4, per_device_train_batch_size=4, max_steps=12, learning_rate=1e-2, warmup_steps=0,
        lr_scheduler_type="constant",
    )  # fmt: skip
    train(arguments, callbacks=[log])
    assert len(log.losses) == 12
    assert sum(log.losses[-3:]) / 3 < 0.7 * sum(log.losses[:3]) / 3


def test_lora_adapters_reload_and_merge_into_the_saved_model(checkpoint, data, tmp_path):
    from peft import PeftModel

    output_dir = tmp_path / "out"
    train(recipe_arguments("phase3_instruct_lora", checkpoint, output_dir, data, learning_rate=1e-2))
    base = OmniEmotionForConditionalGeneration.from_pretrained(checkpoint)
    merged_again = PeftModel.from_pretrained(base, output_dir / "adapter").merge_and_unload()
    saved = OmniEmotionForConditionalGeneration.from_pretrained(output_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(merged_again(input_ids=ids).logits, saved(input_ids=ids).logits)


def test_the_leakage_guards_stop_training_before_it_starts(data, tmp_path):
    dfew = {"DFEW": str(data["DFEW"])}
    # SRE holding a clip of DFEW's held-out test fold (clip 7 of fold 1).
    leaky = tf.write_annotations(tmp_path / "leaky", sre_clips=(1, 7))
    arguments = OmniEmotionScriptArguments(
        phase="instruction", annotations=str(leaky), sources=dfew, video_roots=dfew
    )
    with pytest.raises(LeakageError, match="DFEW/00007"):
        build_phase_dataset(arguments)
    # HRE overlapping SRE.
    overlapping = tf.write_annotations(tmp_path / "overlapping", sre_clips=(1, 2), hre_clips=(2,))
    arguments = OmniEmotionScriptArguments(
        phase="instruction", annotations=str(overlapping), video_roots=dfew
    )
    with pytest.raises(LeakageError, match="DFEW/00002"):
        build_phase_dataset(arguments)
    # MER24 holding an EMER evaluation clip; and MER24 without the list of evaluation clips to keep out.
    mer24 = {"MER24": str(tf.write_mer24(tmp_path / "MER24", data["DFEW"] / "Clip/original/00001.mp4"))}
    arguments = OmniEmotionScriptArguments(
        phase="face_alignment", sources=mer24, evaluation_clips=str(data["evaluation_clips"])
    )
    with pytest.raises(LeakageError, match="sample_00000005"):
        build_phase_dataset(arguments)
    with pytest.raises(ValueError, match="give `evaluation_clips`"):
        build_phase_dataset(OmniEmotionScriptArguments(phase="face_alignment", sources=mer24))


def _run(
    script: str,
    cwd: Path,
    timeout: int = 600,
    command: list[str] | None = None,
    environment: dict[str, str] | None = None,
):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPOSITORY / "tests")
    env.update(environment or {})
    return subprocess.run(
        command or [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_killed_run_resumes_to_the_same_weights_and_optimizer_state(checkpoint, data, tmp_path):
    """6 steps in one go equal 3 steps, a killed process, and a resume to 6 (seeded, CPU)."""
    common = recipe_arguments(
        "phase3_instruct", checkpoint, tmp_path / "unused", data,
        max_steps=6, save_strategy="steps", save_steps=3, learning_rate=1e-3, seed=7,
    )  # fmt: skip
    script = textwrap.dedent(
        """
        import os, sys
        from transformers import TrainerCallback
        from omni_emotion.training import train

        class Kill(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if os.environ.get("KILL_AT") == str(state.global_step):
                    os._exit(137)  # as a killed process: no clean-up, nothing more saved

        train(sys.argv[1:], callbacks=[Kill()])
        """
    )
    script_path = tmp_path / "run.py"
    script_path.write_text(script)

    def run(output: str, *extra: str, kill_at: str = "") -> subprocess.CompletedProcess:
        arguments = [*common, "--output_dir", str(tmp_path / output), *extra]
        env_script = (
            f"import os; os.environ['KILL_AT'] = {kill_at!r}; exec(open({str(script_path)!r}).read())"
        )
        return _run(env_script, tmp_path, command=[sys.executable, "-c", env_script, *arguments])

    straight = run("straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run("resumed", kill_at="3")
    assert killed.returncode == 137, killed.stderr[-3000:]
    assert not (tmp_path / "resumed" / "checkpoint-6").exists()
    resumed = run("resumed", "--resume_from_checkpoint", str(tmp_path / "resumed" / "checkpoint-3"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    one_go, two_goes = tmp_path / "straight" / "checkpoint-6", tmp_path / "resumed" / "checkpoint-6"
    first, second = weights(one_go), weights(two_goes)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    optimizer_one = torch.load(one_go / "optimizer.pt", weights_only=True)
    optimizer_two = torch.load(two_goes / "optimizer.pt", weights_only=True)
    for index, state in optimizer_one["state"].items():
        for name, value in state.items():
            assert torch.equal(value, optimizer_two["state"][index][name]), (index, name)


def test_two_processes_train_a_phase3_step_and_save_once(checkpoint, data, tmp_path):
    output_dir = tmp_path / "out"
    arguments = recipe_arguments(
        "phase3_instruct", checkpoint, output_dir, data, max_steps=1, ddp_backend="gloo"
    )
    with socket.socket() as probe:  # a free port, so that concurrent runs on one machine do not collide
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
        "-m", "omni_emotion.training", *arguments,
    ]  # fmt: skip
    result = _run("", tmp_path, command=command)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("global batch 4 = 2 per device x 1 accumulation x 2 processes") == 1
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "README.md").is_file()


def test_epochs_after_the_first_and_later_runs_decode_nothing(checkpoint, data, tmp_path, monkeypatch):
    import processing.processing_omni_emotion as processing_module

    reads = []
    read_clip = processing_module.read_clip
    monkeypatch.setattr(
        processing_module, "read_clip", lambda *a, **k: reads.append(a[0]) or read_clip(*a, **k)
    )
    cache_dir = tmp_path / "cache"
    arguments = recipe_arguments(
        "phase3_instruct", checkpoint, tmp_path / "out", data,
        max_steps=-1, num_train_epochs=2, preprocessing_cache_dir=cache_dir,
    )  # fmt: skip
    train(arguments)
    assert sorted(map(str, reads)) == sorted({str(path) for path in reads}), "each clip is decoded once"
    assert len(reads) == 6, "six clips (SRE 4 + HRE 2), three instructions each, two epochs"
    reads.clear()
    train([*arguments, "--output_dir", str(tmp_path / "again")])
    assert reads == [], "a rerun with the same data and processor settings reads the cache"


def test_phases_chain_each_from_the_previous_output_folder(checkpoint, data, tmp_path):
    phase1, phase2 = tmp_path / "phase1", tmp_path / "phase2"
    train(recipe_arguments("phase1_audio", checkpoint, phase1, data, max_steps=1, warmup_steps=0))
    train(recipe_arguments("phase2_face", phase1, phase2, data, max_steps=1))
    train(recipe_arguments("phase3_instruct", phase2, tmp_path / "phase3", data, max_steps=1))
    first, second = weights(phase1), weights(phase2)
    assert not torch.equal(
        first["model.audio_projector.linear_1.weight"],
        weights(checkpoint)["model.audio_projector.linear_1.weight"],
    )
    assert torch.equal(
        first["model.audio_projector.linear_1.weight"], second["model.audio_projector.linear_1.weight"]
    )
    assert (
        "phase 2" in (phase2 / "README.md").read_text() and str(phase1) in (phase2 / "README.md").read_text()
    )
