"""The annotation page in a real browser (Playwright + Debian chromium).

Open the page without a personal link (it asks for one), open alice's personal link, annotate
items by clicking and by keyboard, reload mid-way (progress survives), finish, export, and
check the exported rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _browser import launch, require_chromium

require_chromium()
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")

from softlab.annotate import (  # noqa: E402
    StudySettings,
    annotator_link,
    annotator_order,
    create_study,
    main_annotate,
)
from softlab.annotate.testing import running_server  # noqa: E402

pytestmark = pytest.mark.browser
N_ITEMS, N_ATTENTION = 6, 2
TOTAL = N_ITEMS + N_ATTENTION


def label_for(item: int) -> int:
    """The answer the simulated annotator gives: the official label (item % 10 here)."""
    return item % 10


def test_annotate_in_browser_click_keyboard_reload_export(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    labels = np.arange(30) % 10
    study = create_study(
        tmp_path / "study",
        images=images,
        labels=labels,
        classes=[str(c) for c in range(10)],
        dataset="user",
        split="test",
        strategy="stratified",
        size=N_ITEMS,
        seed=0,
        settings=StudySettings(attention_checks=N_ATTENTION),
    )
    order = annotator_order(study, "alice")
    answered: list[int] = []
    problems: list[str] = []

    with running_server(study.study_dir) as url, sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            expect = sync_api.expect

            def current_item() -> int:
                """Wait until the shown image has loaded (and answers are possible); return its item."""
                page.wait_for_function(
                    "() => { const i = document.getElementById('image');"
                    " return !document.getElementById('annotate').hidden && i.complete && i.naturalWidth === 280; }"
                )
                item = int(page.get_attribute("#image", "data-item") or "-1")
                assert item == order[len(answered)], "items must come in the annotator's seeded order"
                return item

            def submitted(item: int) -> None:
                answered.append(item)
                expect(page.locator("#progress")).to_have_text(f"{len(answered)} / {TOTAL}")

            page.goto(url)  # the plain study address: no identity, so it asks for the personal link
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#login")).to_contain_text("personal link")
            page.goto(annotator_link(study, "alice", url))
            expect(page.locator("#progress")).to_have_text(f"0 / {TOTAL}")
            expect(page.locator("#who")).to_have_text("annotator: alice")
            css = page.eval_on_selector("#image", "i => getComputedStyle(i).imageRendering")
            assert css == "pixelated"
            assert page.eval_on_selector("#image", "i => i.getBoundingClientRect().width") == 280

            for _ in range(2):  # by mouse: class, second choice, confidence 4, Submit
                item = current_item()
                lab = label_for(item)
                page.click(f'.class-button[data-label="{lab}"]')
                page.click(f'.second-button[data-label="{(lab + 1) % 10}"]')
                page.click('.confidence-button[data-value="4"]')
                expect(page.locator(f'.class-button[data-label="{lab}"]')).to_have_attribute("aria-pressed", "true")
                page.click("#submit-button")
                submitted(item)

            for _ in range(2):  # by keyboard: digit, Shift+digit (second choice), 'e' (confidence 3), Enter
                item = current_item()
                lab = label_for(item)
                page.keyboard.press("Enter")  # no class chosen yet: nothing is sent
                page.keyboard.press(str(lab))
                page.keyboard.press(f"Shift+Digit{(lab + 2) % 10}")
                page.keyboard.press("e")
                expect(page.locator(f'.second-button[data-label="{(lab + 2) % 10}"]')).to_have_attribute(
                    "aria-pressed", "true"
                )
                page.keyboard.press("Enter")
                submitted(item)

            page.reload()  # the id is remembered and progress comes from the server
            expect(page.locator("#progress")).to_have_text(f"4 / {TOTAL}")

            while len(answered) < TOTAL:  # finish with the keyboard: digit + Enter only
                item = current_item()
                page.keyboard.press(str(label_for(item)))
                page.keyboard.press("Enter")
                submitted(item)
            expect(page.locator("#done")).to_be_visible()
            expect(page.locator("#annotate")).to_be_hidden()
            assert page.locator("#message").text_content() == ""
        finally:
            browser.close()

    assert problems == []
    assert answered == order
    out = tmp_path / "answers.csv"
    assert main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(out)]) == 0
    df = pd.read_csv(out).set_index("item")
    main_items = [i for i in order if i in study.items]
    assert sorted(df.index) == sorted(study.items) and (df["annotator"] == "alice").all()
    assert not df["is_attention_check"].any()
    for pos, item in enumerate(order):
        if item not in study.items:
            continue
        row = df.loc[item]
        assert row["label"] == label_for(item) and row["weight"] == 1 and row["response_ms"] >= 0
        if pos < 2:
            assert (row["second_label"], row["confidence"]) == ((label_for(item) + 1) % 10, 4)
        elif pos < 4:
            assert (row["second_label"], row["confidence"]) == ((label_for(item) + 2) % 10, 3)
        else:
            assert pd.isna(row["second_label"]) and pd.isna(row["confidence"])
    assert len(main_items) == N_ITEMS
    report = pd.read_csv(tmp_path / "answers.attention.csv")
    assert report[["annotator", "n_answers", "n_attention", "n_attention_correct"]].values.tolist() == [
        ["alice", N_ITEMS, N_ATTENTION, N_ATTENTION]
    ]
