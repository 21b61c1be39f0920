"""`omni-emotion review`: the app in which people accept, edit or reject the HRE candidates of a curation run.

The page plays each clip beside every pipeline stage's cues, the reasoning and the labels; the reviewer accepts
(with or without edits) or rejects, mostly from the keyboard, and the next unreviewed clip comes up. Decisions
are kept by `curation.review_store.ReviewStore` on disk, never in the browser. Annotations are untrusted input
(model outputs over clips from the web): every text the page shows is HTML-escaped here, before Gradio sees it.

Gradio is imported only to build the page, so `omni-emotion review --help` and `--export` answer without it.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gradio as gr

    from .review_store import Decision, Progress, ReviewStore

DEFAULT_HOST = "127.0.0.1"

STAGE_TITLES: dict[str, str] = {
    "description": "Global description",
    "faces": "Faces",
    "audio": "Audio",
    "consistency": "Consistency check",
    "synthesis": "Synthesis",
    "self_review": "Self-review",
}
"""The pipeline's stages in the order the page lists them; a trace's other stages follow under their own name."""

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("a", "accept the clip, with the edits in the form"),
    ("Ctrl+Enter", "the same, while typing in a field"),
    ("r", "reject the clip (the note says why)"),
    ("e", "edit the reasoning"),
    ("Esc", "leave a field, so the other keys work again"),
    ("Space", "play or pause the clip"),
    ("j / k", "next / previous clip"),
    ("u", "next unreviewed clip"),
)

# Runs once in the browser when the page loads. Letters act only outside text fields, so typing stays typing.
_SHORTCUTS_JS = """
() => {
  if (window.hreReviewShortcuts) return;
  window.hreReviewShortcuts = true;
  const press = (id) => {
    const element = document.getElementById(id);
    if (element) (element.matches("button") ? element : element.querySelector("button")).click();
  };
  const buttons = {a: "review-accept", r: "review-reject", j: "review-next", k: "review-previous",
                   u: "review-unreviewed"};
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
    if (typing) {
      // Saving leaves the field too, so that the next clip answers to the letter keys at once.
      if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
        event.preventDefault();
        event.target.blur();
        press("review-accept");
      } else if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "e") {
      event.preventDefault();
      document.querySelector("#review-reasoning textarea")?.focus();
    } else if (event.key === " ") {
      const video = document.querySelector("#review-video video");
      if (video) { event.preventDefault(); video.paused ? video.play() : video.pause(); }
    } else if (buttons[event.key]) {
      event.preventDefault();
      press(buttons[event.key]);
    }
  });
}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `omni-emotion review`, on a parser (or subparser) that the caller owns."""
    parser.add_argument(
        "data_dir",
        metavar="DATA_DIR",
        help="the folder `omni-emotion curate --output` wrote (hre_candidates.jsonl, traces/); decisions are "
        "appended to DATA_DIR/reviews.jsonl",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to serve on; anyone who can reach it can review, so keep the default unless the network "
        "is yours (default: %(default)s)",
    )
    parser.add_argument(
        "--port", type=int, help="port to serve on (default: the first free one from 7860, as Gradio picks)"
    )
    parser.add_argument("--reviewer", metavar="NAME", help="your name, saved with each of your decisions")
    parser.add_argument(
        "--export",
        metavar="OUT",
        help="serve nothing: write the accepted clips as HRE records to OUT, a .jsonl file or else a folder in "
        "the Hub layout (Parquet + dataset card), and exit",
    )
    parser.add_argument("--overwrite", action="store_true", help="with --export: replace an earlier export")


def main_from_args(args: argparse.Namespace) -> None:
    """Serve the review page, or export the decisions; a data or export problem exits with its message."""
    from dataset_scripts import RecordError

    from .review_store import ReviewDataError, ReviewStore, export_hre

    try:
        store = ReviewStore(args.data_dir)
        if args.export:
            path = export_hre(store, args.export, overwrite=args.overwrite)
            print(f"Exported the accepted clips of {args.data_dir} ({store.progress()}) to {path}")
            return
        launch(store, host=args.host, port=args.port, reviewer=args.reviewer)
    except (OSError, ImportError, ReviewDataError, RecordError) as error:
        raise SystemExit(f"omni-emotion review: error: {error}") from None


def _text(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def render_value(value: Any) -> str:
    """A stage's parsed output as HTML: text keeps its line breaks, objects become definition lists, lists
    become bullet lists; every string is escaped, keys included."""
    if isinstance(value, str):
        return f'<div style="white-space: pre-wrap">{_text(value)}</div>'
    if isinstance(value, Mapping):
        if not value:
            return "<em>(empty)</em>"
        items = "".join(
            f"<dt><strong>{_text(key)}</strong></dt><dd>{render_value(v)}</dd>" for key, v in value.items()
        )
        return f"<dl>{items}</dl>"
    if isinstance(value, list):
        if not value:
            return "<em>(none)</em>"
        return "<ul>" + "".join(f"<li>{render_value(item)}</li>" for item in value) + "</ul>"
    return f"<code>{_text(value)}</code>"


def render_stages(trace: Mapping[str, Any] | None) -> str:
    """Every stage's cues for the page, in pipeline order, each with its backend, time and raw reply."""
    if trace is None:
        return "<p><em>The pipeline wrote no trace for this clip.</em></p>"
    stages = trace.get("stages")
    stages = stages if isinstance(stages, Mapping) else {}
    blocks = []
    for name in [*STAGE_TITLES, *(name for name in stages if name not in STAGE_TITLES)]:
        title = _text(STAGE_TITLES.get(name, name))
        if name not in stages:
            blocks.append(f"<details><summary>{title}: not in the trace</summary></details>")
            continue
        stage = stages[name] if isinstance(stages[name], Mapping) else {"output": stages[name]}
        about = [_text(stage["backend"])] if isinstance(stage.get("backend"), str) else []
        if isinstance(stage.get("seconds"), int | float):
            about.append(f"{stage['seconds']:.1f} s")
        summary = title + (f" <small>({', '.join(about)})</small>" if about else "")
        raw = stage.get("raw")
        raw_block = (
            f"<details><summary>raw reply</summary><pre style='white-space: pre-wrap'>{_text(raw)}</pre></details>"
            if raw not in (None, "")
            else ""
        )
        blocks.append(
            f"<details open><summary>{summary}</summary>{render_value(stage.get('output'))}{raw_block}</details>"
        )
    return "\n".join(blocks)


def render_status(decision: Decision | None) -> str:
    """What was decided about a clip, as plain text."""
    if decision is None:
        return "not reviewed yet"
    verb = {"accept": "accepted", "edit": "accepted with edits", "reject": "rejected"}[decision.decision]
    text = verb + (f" ({', '.join(decision.edits)})" if decision.edits else "")
    text += (f" by {decision.reviewer}" if decision.reviewer else "") + (
        f" at {decision.time}" if decision.time else ""
    )
    return text + (f": {decision.note}" if decision.note else "")


def _clip_text(record: Mapping[str, Any], video: Path | None) -> str:
    if video is None:
        return f"{record['video']} (no trace gives its path: nothing to play)"
    return str(video) if video.exists() else f"{video} (not on disk: nothing to play)"


def render_header(
    record: Mapping[str, Any], decision: Decision | None, progress: Progress, video: Path | None
) -> str:
    """The clip's identity, the source's label, the self-review score, its review status and the overall progress."""
    score = record["review_score"]
    facts = [
        ("source", record["source"]),
        ("source label", record["label"] or "none"),
        ("self-review score", "none" if score is None else f"{score:g} / 10"),
        ("split", record["split"]),
        ("status", render_status(decision)),
        ("clip", _clip_text(record, video)),
    ]
    rows = "".join(
        f"<tr><th style='text-align: left'>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in facts
    )
    return f"<h3>{_text(record['id'])}</h3><table>{rows}</table><p>{_text(str(progress))}</p>"


def render_message(text: str, *, error: bool = False) -> str:
    colour = "#b00020" if error else "inherit"
    return f"<p style='color: {colour}'>{_text(text)}</p>" if text else ""


def render_shortcuts() -> str:
    rows = "".join(
        f"<tr><td><kbd>{_text(key)}</kbd></td><td>{_text(what)}</td></tr>" for key, what in SHORTCUTS
    )
    return f"<details><summary>Keyboard shortcuts</summary><table>{rows}</table></details>"


def parse_words(text: str) -> list[str]:
    """The open-vocabulary words of the form: comma-separated, blanks dropped."""
    return [word.strip() for word in text.split(",") if word.strip()]


@dataclass(frozen=True)
class ClipView:
    """Everything the page shows after an action. `clip_id=None` marks a refused action (e.g. an edit that breaks
    the schema): the page then changes only the message and keeps the reviewer's form as typed."""

    message_html: str
    clip_id: str | None = None
    header_html: str = ""
    stages_html: str = ""
    video: str | None = None
    frames: tuple[str, ...] = ()
    label: str = ""
    label_choices: tuple[tuple[str, str], ...] = ()
    open_vocabulary: str = ""
    intensity: str = ""
    reasoning: str = ""
    note: str = ""


class ReviewDesk:
    """The page's actions over a store, without Gradio: each returns the `ClipView` to show next."""

    def __init__(self, store: ReviewStore, reviewer: str | None = None):
        self.store = store
        self.reviewer = reviewer

    def open(self, clip_id: str | None = None, message: str = "") -> ClipView:
        """Show `clip_id`, or the first unreviewed clip (the first clip once all are reviewed)."""
        from dataset_scripts import SOURCES

        from .review_store import clip_media, trace_video

        if clip_id is None:
            clip_id = self.store.next_unreviewed()
            if clip_id is None:
                clip_id = self.store.ids[0]
                message = (
                    message
                    or "Every clip is reviewed: export with omni-emotion review DATA_DIR --export OUT."
                )
        store = self.store
        record = store.reviewed_record(clip_id)
        decision = store.decision(clip_id)
        trace = store.trace(clip_id)
        video, frames = clip_media(trace_video(trace))
        return ClipView(
            message_html=render_message(message),
            clip_id=clip_id,
            header_html=render_header(record, decision, store.progress(), trace_video(trace)),
            stages_html=render_stages(trace),
            video=str(video) if video else None,
            frames=tuple(str(frame) for frame in frames),
            label=record["label"] or "",
            label_choices=(("(none)", ""), *((name, name) for name in SOURCES[record["source"]].classes)),
            open_vocabulary=", ".join(record["open_vocabulary"]),
            intensity=record["intensity"] or "",
            reasoning=record["reasoning"],
            note=(decision.note or "") if decision else "",
        )

    def accept(
        self, clip_id: str, label: str | None, words: str, intensity: str | None, reasoning: str
    ) -> ClipView:
        """Save the form as the clip's accepted version, then show the next unreviewed clip."""
        from dataset_scripts import RecordError

        fields = {
            "label": label or None,
            "open_vocabulary": parse_words(words),
            "reasoning": reasoning,
            "intensity": (intensity or "").strip() or None,
        }
        try:
            decision = self.store.accept(clip_id, fields, reviewer=self.reviewer)
        except (RecordError, ValueError) as error:
            return ClipView(render_message(f"Not saved: {error}", error=True))
        return self._after(decision)

    def reject(self, clip_id: str, note: str) -> ClipView:
        """Save the rejection (with the note), then show the next unreviewed clip."""
        return self._after(self.store.reject(clip_id, note.strip() or None, reviewer=self.reviewer))

    def step(self, clip_id: str, offset: int) -> ClipView:
        return self.open(self.store.neighbour(clip_id, offset))

    def next_unreviewed(self, clip_id: str) -> ClipView:
        following = self.store.next_unreviewed(after=clip_id)
        return self.open(following) if following else self.open(clip_id, "Every clip is reviewed.")

    def _after(self, decision: Decision) -> ClipView:
        saved = f"Saved: {decision.id} {render_status(decision)}."
        following = self.store.next_unreviewed(after=decision.id)
        if following is None:
            return self.open(decision.id, f"{saved} Every clip is reviewed: export with --export OUT.")
        return self.open(following, saved)


def _import_gradio():
    try:
        import gradio
    except ImportError as error:
        raise ImportError(
            f"The review app needs Gradio ({error}); install it with: pip install 'omni-emotion[review]'"
        ) from error
    return gradio


def build_app(store: ReviewStore, reviewer: str | None = None) -> gr.Blocks:
    """The review page over `store` (not launched: `launch` serves it)."""
    gr = _import_gradio()
    desk = ReviewDesk(store, reviewer)
    with gr.Blocks(title="HRE review", analytics_enabled=False) as app:
        clip_id = gr.State(None)
        with gr.Row():
            with gr.Column(scale=5):
                header = gr.HTML(js_on_load=None)
                video = gr.Video(
                    label="clip", interactive=False, autoplay=True, loop=True, elem_id="review-video"
                )
                frames = gr.Gallery(
                    label="frames",
                    visible=False,
                    columns=4,
                    height="auto",
                    object_fit="contain",
                    interactive=False,
                )
                label = gr.Dropdown(label="source label", choices=[], elem_id="review-label")
                words = gr.Textbox(label="open-vocabulary emotions, comma-separated", elem_id="review-words")
                intensity = gr.Textbox(label="intensity", elem_id="review-intensity")
                reasoning = gr.Textbox(label="reasoning", lines=8, elem_id="review-reasoning")
                note = gr.Textbox(label="note (why a clip is rejected)", elem_id="review-note")
                with gr.Row():
                    accept = gr.Button("Accept (a)", variant="primary", elem_id="review-accept")
                    reject = gr.Button("Reject (r)", variant="stop", elem_id="review-reject")
                with gr.Row():
                    previous = gr.Button("Previous (k)", elem_id="review-previous")
                    following = gr.Button("Next (j)", elem_id="review-next")
                    unreviewed = gr.Button("Next unreviewed (u)", elem_id="review-unreviewed")
                message = gr.HTML(js_on_load=None, elem_id="review-message")
                gr.HTML(render_shortcuts(), js_on_load=None)
            with gr.Column(scale=6):
                stages = gr.HTML(js_on_load=None, elem_id="review-stages")
        outputs = [message, clip_id, header, stages, video, frames, label, words, intensity, reasoning, note]

        def show(view: ClipView) -> list[Any]:
            if view.clip_id is None:
                return [view.message_html, *(gr.update() for _ in outputs[1:])]
            return [
                view.message_html,
                view.clip_id,
                view.header_html,
                view.stages_html,
                gr.update(value=view.video, visible=not view.frames),
                gr.update(value=list(view.frames), visible=bool(view.frames)),
                gr.update(choices=list(view.label_choices), value=view.label),
                view.open_vocabulary,
                view.intensity,
                view.reasoning,
                view.note,
            ]

        form = [clip_id, label, words, intensity, reasoning]
        app.load(lambda: show(desk.open()), outputs=outputs, api_name="open")
        app.load(None, js=_SHORTCUTS_JS)
        accept.click(lambda *values: show(desk.accept(*values)), form, outputs, api_name="accept")
        reject.click(
            lambda current, text: show(desk.reject(current, text)),
            [clip_id, note],
            outputs,
            api_name="reject",
        )
        previous.click(lambda current: show(desk.step(current, -1)), clip_id, outputs, api_name="previous")
        following.click(lambda current: show(desk.step(current, 1)), clip_id, outputs, api_name="next")
        unreviewed.click(
            lambda current: show(desk.next_unreviewed(current)), clip_id, outputs, api_name="unreviewed"
        )
    return app


def clip_folders(store: ReviewStore) -> tuple[list[str], dict[str, Path | None]]:
    """(the folders holding the clips, {id: path from the trace} of the clips not on disk). Gradio serves only files under the
    folders it is given, so the app shares these and nothing else of the disk."""
    from .review_store import trace_video

    folders, missing = set(), {}
    for clip_id in store.ids:
        video = trace_video(store.trace(clip_id))
        if video is None or not video.exists():
            missing[clip_id] = video
        else:
            folders.add(str(video.parent))
    return sorted(folders), missing


def launch(
    store: ReviewStore,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    reviewer: str | None = None,
    block: bool = True,
) -> gr.Blocks:
    """Serve the review page: until interrupted, or in the background with `block=False` (close the returned
    app with `app.close()`)."""
    app = build_app(store, reviewer)
    folders, missing = clip_folders(store)
    if missing:
        clip_id, video = next(iter(missing.items()))
        print(
            f"{len(missing)} of {len(store.ids)} clips have no video on disk (e.g. {clip_id}: "
            f"{video or 'no trace names one'}); they are shown without one.",
            file=sys.stderr,
        )
    if host not in (DEFAULT_HOST, "localhost", "::1"):
        print(
            f"Serving on {host}: anyone who reaches it can see the clips and change the review.",
            file=sys.stderr,
        )
    print(f"Reviewing {store.data_dir}: {store.progress()}. Decisions go to {store.reviews_path}.")
    app.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=False,
        allowed_paths=folders,
        show_error=True,
        prevent_thread_lock=not block,
    )
    return app
