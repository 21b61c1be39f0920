"""The HRE review app: decisions saved at once and replayed on restart, exports of HRE records, escaped text,
and the Gradio page served on 127.0.0.1, driven through its API and from the keyboard in headless Chromium."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from curation.review import ReviewDesk, launch, render_header, render_stages
from curation.review_store import ReviewDataError, ReviewStore, export_hre, trace_file_name
from dataset_scripts import RECORD_FIELDS, read_records
from omni_emotion.cli import main
from omni_emotion.synthetic.media import write_clip, write_png

HOSTILE = "<script>alert('x')</script> **bold** [link](javascript:alert(1)) <img src=x onerror=alert(2)>"


def _record(clip_id: str, source: str, label: str, reasoning: str, score: float = 7.0) -> dict:
    return {
        "id": clip_id,
        "video": clip_id.split("/", 1)[1] + ".mp4",
        "source": source,
        "label": label,
        "open_vocabulary": ["joyful", "relaxed"],
        "reasoning": reasoning,
        "intensity": "medium",
        "review_score": score,
        "split": "train",
    }


def _stages(reasoning: str) -> dict:
    return {
        "description": {"output": "A woman smiles in a bright kitchen.", "raw": "A woman smiles...", "backend": "vlm", "seconds": 1.25},
        "faces": {"output": [{"track": 0, "age": 31, "gender": "female", "movements": "raised cheeks"}], "raw": "[...]", "backend": "vlm", "seconds": 0.5},
        "audio": {"output": {"transcript": "That is wonderful!", "language": "en", "vocal_emotion": "excited"}, "raw": "", "backend": "whisper", "seconds": 2.0},
        "consistency": {"output": {"consistent": True, "reason": "face, voice and words agree"}, "raw": "{}", "backend": "llm", "seconds": 0.25},
        "synthesis": {"output": {"reasoning": reasoning, "open_vocabulary": ["joyful"], "intensity": "medium"}, "raw": reasoning, "backend": "llm", "seconds": 3.0},
    }  # fmt: skip


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """What `omni-emotion curate --output` writes for four HRE candidates: three clips (one stored as a folder of
    frames) and one with no trace."""
    data, media = tmp_path / "curated", tmp_path / "media"
    (data / "traces").mkdir(parents=True)
    media.mkdir()
    records = [
        _record("DFEW/0001", "DFEW", "happy", "She smiles and her voice rises."),
        _record("MAFW/0002", "MAFW", "sadness", "He looks down and speaks slowly."),
        _record("FERV39K/0003", "FERV39K", "surprise", HOSTILE),
        _record("CAER/0004", "CAER", "anger", "Raised voice, frowning."),
    ]
    for record in records[:3]:
        if record["source"] == "FERV39K":
            video = media / "0003"
            video.mkdir()
            for index in range(3):
                write_png(video / f"{index:03d}.png")
        else:
            video = Path(write_clip(media / record["video"], seconds=0.5, width=64, height=48))
        trace = {key: record[key] for key in ("id", "source", "label")}
        trace |= {"video": str(video), "stages": _stages(record["reasoning"])}
        (data / "traces" / trace_file_name(record["id"])).write_text(json.dumps(trace), encoding="utf-8")
    with (data / "hre_candidates.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    return data


def _decisions(data_dir: Path) -> list[dict]:
    return [
        json.loads(line) for line in (data_dir / "reviews.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def test_a_folder_without_candidates_says_what_to_pass(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no hre_candidates\.jsonl\. Pass the folder that `omni-emotion curate"
    ):
        ReviewStore(tmp_path)


def test_accept_edit_and_reject_are_on_disk_at_once_and_a_restart_goes_on_at_the_next_clip(data_dir):
    desk = ReviewDesk(ReviewStore(data_dir), reviewer="ana")
    view = desk.open()
    assert view.clip_id == "DFEW/0001"
    view = desk.accept(view.clip_id, view.label, view.open_vocabulary, view.intensity, view.reasoning)
    assert view.clip_id == "MAFW/0002" and "accepted by ana" in view.message_html
    view = desk.accept(view.clip_id, "anxiety", "Worried, Tense", "", "He looks down, his hands shake.")
    assert view.clip_id == "FERV39K/0003"
    assert [(d["id"], d["decision"], d["reviewer"]) for d in _decisions(data_dir)] == [
        ("DFEW/0001", "accept", "ana"),
        ("MAFW/0002", "edit", "ana"),
    ]
    assert _decisions(data_dir)[1]["edits"] == {
        "label": "anxiety",
        "open_vocabulary": ["worried", "tense"],
        "reasoning": "He looks down, his hands shake.",
        "intensity": None,
    }

    restarted = ReviewDesk(ReviewStore(data_dir), reviewer="ben")
    view = restarted.open()
    assert view.clip_id == "FERV39K/0003"
    view = restarted.reject(view.clip_id, "  the faces are not visible ")
    assert view.clip_id == "CAER/0004"
    assert _decisions(data_dir)[-1]["note"] == "the faces are not visible"
    assert str(ReviewStore(data_dir).progress()) == "3 of 4 reviewed (1 accepted, 1 edited, 1 rejected)"
    edited = restarted.open("MAFW/0002")
    assert (edited.label, edited.open_vocabulary) == ("anxiety", "worried, tense")
    assert "accepted with edits (label, open_vocabulary, reasoning, intensity) by ana" in edited.header_html


def test_the_latest_decision_about_a_clip_wins(data_dir):
    store = ReviewStore(data_dir)
    store.reject("DFEW/0001", "blurry")
    store.accept("DFEW/0001", {"label": "neutral"})
    assert ReviewStore(data_dir).decision("DFEW/0001").edits == {"label": "neutral"}
    assert ReviewStore(data_dir).next_unreviewed() == "MAFW/0002"


def test_an_edit_that_breaks_the_schema_is_refused_and_nothing_is_written(data_dir):
    desk = ReviewDesk(ReviewStore(data_dir))
    view = desk.accept("DFEW/0001", "sadness", "tearful", "", "She cries.")
    assert view.clip_id is None  # the page keeps the reviewer's form as typed
    assert "Not saved" in view.message_html and "&#x27;sadness&#x27; is not a DFEW class" in view.message_html
    view = desk.accept("DFEW/0001", "sad", "tearful", "", "   ")
    assert view.clip_id is None and "reasoning of DFEW/0001 is empty" in view.message_html
    assert not (data_dir / "reviews.jsonl").exists()


def test_a_line_torn_by_a_crash_is_dropped_and_the_file_stays_valid(data_dir):
    ReviewStore(data_dir).accept("DFEW/0001", {})
    with (data_dir / "reviews.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"id": "MAFW/0002", "decis')
    store = ReviewStore(data_dir)
    assert store.decision("MAFW/0002") is None and store.next_unreviewed() == "MAFW/0002"
    store.reject("MAFW/0002")
    assert [d["decision"] for d in _decisions(data_dir)] == ["accept", "reject"]


def test_a_broken_line_in_the_middle_names_file_and_line(data_dir):
    (data_dir / "reviews.jsonl").write_text('{"id": "DFEW/0001", "decision": "accept"}\nnot json\n')
    with pytest.raises(ReviewDataError, match=r"reviews\.jsonl:2: not valid JSON"):
        ReviewStore(data_dir)


def test_decisions_from_many_tabs_at_once_never_interleave(data_dir):
    store = ReviewStore(data_dir)
    threads = [
        threading.Thread(target=lambda: [store.reject(clip_id, "x" * 5000) for clip_id in store.ids * 10])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_decisions(data_dir)) == 4 * 10 * len(store.ids)


def test_the_export_holds_accepted_clips_with_their_edits_and_the_self_review_score(data_dir, tmp_path):
    store = ReviewStore(data_dir)
    store.accept("DFEW/0001", {})
    store.accept("MAFW/0002", {"label": "anxiety", "open_vocabulary": ["Worried"]})
    store.reject("FERV39K/0003", "hostile text")
    records = read_records(export_hre(store, tmp_path / "hre.jsonl"))
    assert [record["id"] for record in records] == ["DFEW/0001", "MAFW/0002"]
    assert (records[1]["label"], records[1]["open_vocabulary"], records[1]["review_score"]) == (
        "anxiety",
        ["worried"],
        7.0,
    )
    assert records[1]["reasoning"] == "He looks down and speaks slowly."
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_hre(store, tmp_path / "hre.jsonl")


def test_the_command_exports_a_hub_folder_that_datasets_loads(data_dir, tmp_path, capsys):
    from datasets import load_dataset

    with pytest.raises(SystemExit, match=r"No clip of .* is accepted yet"):
        main(["review", str(data_dir), "--export", str(tmp_path / "hub")])
    ReviewStore(data_dir).accept("CAER/0004", {"intensity": "high"})
    main(["review", str(data_dir), "--export", str(tmp_path / "hub")])
    assert "1 of 4 reviewed (0 accepted, 1 edited, 0 rejected)" in capsys.readouterr().out
    loaded = load_dataset(str(tmp_path / "hub"), name="hre")
    assert list(loaded) == ["train"] and loaded["train"].column_names == list(RECORD_FIELDS)
    assert loaded["train"][0]["intensity"] == "high"


def test_every_text_the_page_shows_is_escaped(data_dir):
    trace = json.loads((data_dir / "traces" / trace_file_name("FERV39K/0003")).read_text())
    trace["stages"]["faces"] = {
        "output": {HOSTILE: [HOSTILE]},
        "raw": HOSTILE,
        "backend": HOSTILE,
        "seconds": 1,
    }
    trace["stages"][HOSTILE] = HOSTILE
    store = ReviewStore(data_dir)
    record = {**store.candidates["FERV39K/0003"], "id": HOSTILE}
    shown = render_stages(trace) + render_header(record, None, store.progress(), Path(HOSTILE))
    for markup in ("<script", "<img", "<a ", "<strong>bold"):
        assert markup not in shown
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in shown
    assert "**bold** [link](javascript:alert(1))" in shown
    message = ReviewDesk(store).accept("FERV39K/0003", HOSTILE, "", "", "text").message_html
    assert "<script" not in message and "&lt;script&gt;" in message


def test_stages_are_listed_in_pipeline_order_and_a_missing_one_says_so(data_dir):
    shown = ReviewDesk(ReviewStore(data_dir)).open("DFEW/0001").stages_html
    titles = ["Global description", "Faces", "Audio", "Consistency check", "Synthesis", "Self-review"]
    assert [shown.index(title) for title in titles] == sorted(shown.index(title) for title in titles)
    assert "Self-review: not in the trace" in shown and "vlm, 1.2 s" in shown and "raised cheeks" in shown


def test_the_page_plays_a_file_shows_frames_of_a_folder_and_says_when_there_is_no_trace(data_dir):
    desk = ReviewDesk(ReviewStore(data_dir))
    assert desk.open("DFEW/0001").video.endswith("0001.mp4")
    frames = desk.open("FERV39K/0003")
    assert frames.video is None and [Path(path).name for path in frames.frames] == [
        "000.png",
        "001.png",
        "002.png",
    ]
    untraced = desk.open("CAER/0004")
    assert untraced.video is None and "wrote no trace" in untraced.stages_html
    assert "no trace gives its path: nothing to play" in untraced.header_html


@pytest.fixture
def gradio_cache(tmp_path, monkeypatch) -> Path:
    """Gradio copies the clips it serves into its cache: keep that cache in the test's folder."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    return tmp_path / "gradio"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_app_serves_on_localhost_and_its_buttons_save_decisions(data_dir, gradio_cache):
    from gradio_client import Client

    port = _free_port()
    app = launch(ReviewStore(data_dir), port=port, reviewer="ana", block=False)
    try:
        assert app.server_name == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=gradio_cache / "client")
        opened = client.predict(api_name="/open")
        assert "DFEW/0001" in opened[1] and Path(opened[3]["value"]).read_bytes()[4:8] == b"ftyp"
        client.predict("sad", "gloomy", "low", "She sighs.", api_name="/accept")
        client.predict("not a usable clip", api_name="/reject")
    finally:
        app.close()
    assert [(d["id"], d["decision"], d["reviewer"]) for d in _decisions(data_dir)] == [
        ("DFEW/0001", "edit", "ana"),
        ("MAFW/0002", "reject", "ana"),
    ]


@pytest.fixture
def chromium():
    """A headless Chromium driven by Selenium, from Debian's `chromium` and `chromium-driver` packages."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip(
            "the browser test needs Chromium and its driver (Debian: apt install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1700"):
        options.add_argument(flag)
    # A given driver path keeps Selenium from looking for one on the network.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    yield driver
    driver.quit()


def test_a_reviewer_works_from_the_keyboard_in_chromium_and_a_reload_goes_on(
    data_dir, gradio_cache, chromium, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    app = launch(ReviewStore(data_dir), port=port, reviewer="ana", block=False)
    try:
        wait = WebDriverWait(chromium, 60)

        def shows(clip_id: str) -> None:
            wait.until(
                lambda d: d.execute_script("return document.querySelector('h3')?.textContent") == clip_id
            )

        def press(*keys: str) -> None:
            ActionChains(chromium).send_keys(*keys).perform()

        def with_control(key: str) -> None:
            ActionChains(chromium).key_down(Keys.CONTROL).send_keys(key).key_up(Keys.CONTROL).perform()

        chromium.get(f"http://127.0.0.1:{port}/")
        shows("DFEW/0001")
        wait.until(lambda d: d.execute_script("return window.hreReviewShortcuts === true"))
        press("a")
        shows("MAFW/0002")
        press("e")
        with_control("a")
        press("He looks down; his voice breaks.")
        with_control(Keys.ENTER)
        shows("FERV39K/0003")
        press("r")  # the save left the field: letters are shortcuts again
        shows("CAER/0004")
        press("k")
        shows("FERV39K/0003")
        stages = "document.querySelector('#review-stages')"
        assert chromium.execute_script(f"return {stages}.querySelectorAll('script, img, a').length") == 0
        assert "<script>alert('x')</script>" in chromium.execute_script(f"return {stages}.textContent")
        chromium.refresh()
        shows("CAER/0004")
        chromium.save_screenshot(str(tmp_path / "review.png"))
    finally:
        app.close()
    assert [(d["id"], d["decision"], d["edits"]) for d in _decisions(data_dir)] == [
        ("DFEW/0001", "accept", {}),
        ("MAFW/0002", "edit", {"reasoning": "He looks down; his voice breaks."}),
        ("FERV39K/0003", "reject", {}),
    ]
    assert (tmp_path / "review.png").stat().st_size > 10_000
