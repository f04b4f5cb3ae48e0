"""The annotation app: study creation, subset strategies, API rules, storage and export.

No downloaded data: every study is built from a small random uint8 image array.
"""

from __future__ import annotations

import io
import json
import math
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient
from PIL import Image

from softlab.annotate import (
    StudyError,
    StudySettings,
    annotator_order,
    create_study,
    main_annotate,
    open_study,
    select_attention_items,
    select_items,
)
from softlab.annotate.app import KEY_HEADER, MAX_BODY_BYTES, create_app, host_name, serve
from softlab.annotate.db import AnnotationDB, DatabaseMismatchError
from softlab.annotate.export import annotation_table, attention_report, export_annotations
from softlab.annotate.study import annotator_key, annotator_link, is_loopback
from softlab.data.annotations import to_counts, validate_annotations

N_IMAGES = 30
CLASSES = tuple(str(c) for c in range(10))


def make_images(n: int = N_IMAGES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.int64) % 10


def make_study(tmp_path: Path, name: str = "study", size: int = 8, attention: int = 0, **settings_kw: object):
    images, labels = make_images()
    return create_study(
        tmp_path / name,
        images=images,
        labels=labels,
        classes=CLASSES,
        dataset="user",
        split="test",
        strategy="stratified",
        size=size,
        seed=0,
        settings=StudySettings(attention_checks=attention, **settings_kw),
    )  # type: ignore[arg-type]


def db_rows(study_dir: Path) -> list[tuple]:
    with sqlite3.connect(study_dir / "annotations.sqlite") as conn:
        return conn.execute(
            "SELECT annotator, item, label, second_label, confidence, response_ms, attempt FROM answers ORDER BY id"
        ).fetchall()


def answer(item: int, label: int = 3, annotator: str = "alice", **kw: object) -> dict:
    return {"annotator": annotator, "item": item, "label": label, "response_ms": 1234.5, **kw}


def sign_as_annotator(study):
    """An httpx request hook playing the page opened from each annotator's personal link: it adds
    the key of the annotator the request names (query ``annotator`` or JSON body), unless the
    request already carries a key."""

    def hook(request) -> None:
        if KEY_HEADER.lower() in request.headers:
            return
        who = request.url.params.get("annotator")
        if who is None and request.method == "POST":
            try:
                who = json.loads(request.content).get("annotator")
            except (ValueError, AttributeError):
                return
        if isinstance(who, str):
            try:
                request.headers[KEY_HEADER] = annotator_key(study, who)
            except StudyError:
                pass  # not a valid id: the server says why

    return hook


def annotating_client(study, base_url: str = "http://testserver", **app_kw: object) -> TestClient:
    client = TestClient(create_app(study.study_dir, **app_kw), base_url=base_url)  # type: ignore[arg-type]
    client.event_hooks = {"request": [sign_as_annotator(study)], "response": []}
    return client


@pytest.fixture
def study(tmp_path: Path):
    return make_study(tmp_path)


@pytest.fixture
def client(study):
    with annotating_client(study) as c:
        yield c


# --------------------------------------------------------------------------- study and strategies


def test_study_is_written_atomically_and_reopens_identically(study) -> None:
    d = study.study_dir
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) == [
        "annotator.key",
        "images.npz",
        "study.json",
    ]
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    assert stat.S_IMODE(os.stat(d / "study.json").st_mode) & 0o077 == 0  # token file not world-readable
    assert stat.S_IMODE(os.stat(d / "annotator.key").st_mode) & 0o077 == 0  # the signing secret neither
    again = open_study(d)
    assert again == study
    meta = json.loads((d / "study.json").read_text())
    assert meta["items"] == list(study.items) and len(meta["token"]) >= 24
    images, _ = make_images()
    shown = study.load_images()
    assert set(shown) == set(study.items)
    for i, img in shown.items():
        np.testing.assert_array_equal(img, images[i])


def test_create_refuses_existing_study_and_bad_inputs(tmp_path: Path, study) -> None:
    images, labels = make_images()
    with pytest.raises(StudyError, match="already holds a study"):
        create_study(
            study.study_dir, images=images, labels=labels, classes=CLASSES, dataset="user", split="test", size=5
        )
    with pytest.raises(StudyError, match="uint8"):
        create_study(
            tmp_path / "a", images=images.astype(np.float32), labels=labels, classes=CLASSES, dataset="u", split="t"
        )
    with pytest.raises(StudyError, match=r"\(N, 28, 28\)"):
        create_study(tmp_path / "b", images=images[:, :20], labels=labels, classes=CLASSES, dataset="u", split="t")
    with pytest.raises(StudyError, match="labels: row 3"):
        bad = labels.copy()
        bad[3] = 10
        create_study(tmp_path / "c", images=images, labels=bad, classes=CLASSES, dataset="u", split="t", size=5)
    with pytest.raises(StudyError, match="size: asked for 31"):
        create_study(tmp_path / "d", images=images, labels=labels, classes=CLASSES, dataset="u", split="t", size=31)
    assert not (tmp_path / "d" / "study.json").exists()


def test_stratified_quota_hand_case() -> None:
    # class sizes 6, 3, 1; size 5 → exact quotas 3, 1.5, 0.5 → floors 3, 1, 0 + one extra to class 1 or 2
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    for seed in range(5):
        items = select_items("stratified", 5, seed, len(labels), labels=labels)
        counts = np.bincount(labels[items], minlength=3)
        assert counts[0] == 3 and counts[1] + counts[2] == 2 and counts[1] >= 1
    equal = np.repeat(np.arange(10), 3)
    items = select_items("stratified", 10, 0, 30, labels=equal)
    assert np.bincount(equal[items], minlength=10).tolist() == [1] * 10


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.integers(1, 12), min_size=2, max_size=6), frac=st.floats(0.05, 1.0), seed=st.integers(0, 10**6)
)
def test_stratified_property(counts: list[int], frac: float, seed: int) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(seed)
    labels = labels[rng.permutation(len(labels))]
    size = max(1, round(frac * len(labels)))
    items = select_items("stratified", size, seed, len(labels), labels=labels)
    assert len(items) == size and len(np.unique(items)) == size and np.all(np.diff(items) > 0)
    got = np.bincount(labels[items], minlength=len(counts))
    exact = size * np.asarray(counts) / len(labels)
    assert np.all(got >= np.floor(exact) - 1e-9) and np.all(got <= np.ceil(exact) + 1e-9)
    np.testing.assert_array_equal(items, select_items("stratified", size, seed, len(labels), labels=labels))


def test_uncertain_picks_highest_entropy_against_scipy() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(10, 0.3), size=40).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    items = select_items("uncertain", 7, 0, 40, probs=probs)
    reference = np.sort(np.argsort(-scipy.stats.entropy(probs.astype(np.float64), axis=1))[:7])
    np.testing.assert_array_equal(items, reference)
    with pytest.raises(StudyError, match="needs teacher probabilities"):
        select_items("uncertain", 7, 0, 40)
    bad = probs.copy()
    bad[5, 0] += 0.5
    with pytest.raises(StudyError, match="row 5 sums to"):
        select_items("uncertain", 7, 0, 40, probs=bad)
    with pytest.raises(StudyError, match=r"expected shape \(40, n_classes\)"):
        select_items("uncertain", 7, 0, 40, probs=probs[:30])


def test_ambiguous_picks_highest_variability_with_seeded_ties() -> None:
    v = np.zeros(20)
    v[[3, 11, 17]] = [0.3, 0.2, 0.25]
    np.testing.assert_array_equal(select_items("ambiguous", 3, 0, 20, variability=v), [3, 11, 17])
    ties = np.zeros(20)
    a, b = select_items("ambiguous", 5, 0, 20, variability=ties), select_items("ambiguous", 5, 0, 20, variability=ties)
    np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, select_items("ambiguous", 5, s, 20, variability=ties)) for s in range(1, 6))
    with pytest.raises(StudyError, match="variability: entry 2: nan is not a variability"):
        select_items("ambiguous", 3, 0, 20, variability=np.r_[0.1, 0.1, np.nan, np.zeros(17)])
    with pytest.raises(StudyError, match="needs cartography variability"):
        select_items("ambiguous", 3, 0, 20)
    with pytest.raises(StudyError, match="strategy: expected one of"):
        select_items("hardest", 3, 0, 20)


def test_attention_items_are_easy_known_and_outside_subset() -> None:
    labels = np.arange(30) % 10
    probs = np.full((30, 10), 0.1)
    probs[[4, 14, 24], :] = 0.0
    probs[[4, 14, 24], labels[[4, 14, 24]]] = 1.0  # confident and correct
    probs[5, :] = 0.0
    probs[5, (labels[5] + 1) % 10] = 1.0  # confident but wrong: not an attention check
    subset = np.array([14])
    att = select_attention_items(2, 0, subset, labels, probs=probs)
    np.testing.assert_array_equal(att, [4, 24])
    plain = select_attention_items(5, 0, subset, labels)
    assert len(plain) == 5 and 14 not in plain
    with pytest.raises(StudyError, match="need official labels"):
        select_attention_items(2, 0, subset, None)


def test_annotator_order_is_seeded_permutation(tmp_path: Path) -> None:
    s = make_study(tmp_path, size=10, attention=3)
    order = annotator_order(s, "alice")
    assert sorted(order) == sorted(s.all_items)
    assert order == annotator_order(open_study(s.study_dir), "alice")
    assert order != annotator_order(s, "bob")
    other_seed = create_study(
        tmp_path / "s2",
        images=make_images()[0],
        labels=make_images()[1],
        classes=CLASSES,
        dataset="user",
        split="test",
        size=10,
        seed=0,
        settings=StudySettings(attention_checks=3),
    )
    assert annotator_order(other_seed, "alice") == order  # same seed + id ⇒ same order


# --------------------------------------------------------------------------- API: happy path


def test_study_info_next_and_submit(client: TestClient, study) -> None:
    info = client.get("/api/study").json()
    assert info["classes"] == list(CLASSES) and info["total"] == 8 and info["confidence"] == {"min": 1, "max": 5}
    nxt = client.get("/api/next", params={"annotator": "alice"}).json()
    order = annotator_order(study, "alice")
    assert nxt == {
        "annotator": "alice",
        "done": 0,
        "total": 8,
        "finished": False,
        "item": order[0],
        "image_url": f"/api/image/{order[0]}.png?v={study.study_id}",
    }
    r = client.post("/api/answers", json=answer(order[0], label=7, second_label=1, confidence=4))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["answer"]["attempt"] == 1 and body["answer"]["timestamp"].endswith("Z")
    assert body["progress"]["done"] == 1 and body["progress"]["item"] == order[1]
    assert db_rows(study.study_dir) == [("alice", order[0], 7, 1, 4, 1234.5, 1)]
    # an annotator id is trimmed: " alice " is alice
    assert client.get("/api/next", params={"annotator": " alice "}).json()["done"] == 1


def test_progress_survives_restart_and_ends_finished(study) -> None:
    order = annotator_order(study, "bob")
    with annotating_client(study) as c:
        for item in order[:3]:
            assert c.post("/api/answers", json=answer(item, annotator="bob")).status_code == 201
    with annotating_client(study) as c:  # a fresh app on the same folder
        p = c.get("/api/next", params={"annotator": "bob"}).json()
        assert (p["done"], p["item"]) == (3, order[3])
        for item in order[3:]:
            last = c.post("/api/answers", json=answer(item, annotator="bob")).json()
        assert last["progress"] == {
            "annotator": "bob",
            "done": 8,
            "total": 8,
            "finished": True,
            "item": None,
            "image_url": None,
        }


def test_image_is_enlarged_crisp_png(client: TestClient, study) -> None:
    item = study.items[2]
    r = client.get(f"/api/image/{item}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert img.shape == (280, 280)
    original = make_images()[0][item]
    np.testing.assert_array_equal(img[::10, ::10], original)
    np.testing.assert_array_equal(img, np.kron(original, np.ones((10, 10), dtype=np.uint8)))
    outside = next(i for i in range(N_IMAGES) if i not in study.all_items)
    assert client.get(f"/api/image/{outside}.png").status_code == 404


def test_page_and_assets_are_local_with_security_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "image-rendering: pixelated" in client.get("/static/style.css").text


# --------------------------------------------------------------------------- API: invalid submissions

INVALID = [
    ("unknown item", {"item": 10_000}, "item"),
    ("negative label", {"label": -1}, "label"),
    ("label outside classes", {"label": 10}, "label"),
    ("label as text", {"label": "3"}, "label"),
    ("label as bool", {"label": True}, "label"),
    ("second equals first", {"label": 2, "second_label": 2}, "second_label"),
    ("second outside classes", {"second_label": 11}, "second_label"),
    ("confidence below scale", {"confidence": 0}, "confidence"),
    ("confidence above scale", {"confidence": 6}, "confidence"),
    ("confidence fractional", {"confidence": 2.5}, "confidence"),
    ("negative response time", {"response_ms": -1}, "response_ms"),
    ("infinite response time", {"response_ms": math.inf}, "response_ms"),
    ("missing response time", {"response_ms": None}, "response_ms"),
    ("empty annotator", {"annotator": "   "}, "annotator"),
    ("missing annotator", {"annotator": None}, "annotator"),
    ("annotator with markup", {"annotator": "<script>"}, "annotator"),
    ("unknown field", {"extra": 1}, "extra"),
    ("bad submission id", {"submission_id": "a b/c"}, "submission_id"),
]


@pytest.mark.parametrize("what,change,field", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_submission_is_rejected_and_changes_nothing(
    client: TestClient, study, what: str, change: dict, field: str
) -> None:
    client.post("/api/answers", json=answer(study.items[0]))
    before = db_rows(study.study_dir)
    body = answer(study.items[1])
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    # json.dumps writes inf as the non-standard literal Infinity, which the server must refuse too
    r = client.post("/api/answers", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, (what, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and field in detail, detail
    assert db_rows(study.study_dir) == before


def test_non_json_body_is_rejected(client: TestClient, study) -> None:
    r = client.post("/api/answers", content=json.dumps(answer(study.items[0])), headers={"content-type": "text/plain"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert db_rows(study.study_dir) == []


def test_next_rejects_empty_annotator(client: TestClient) -> None:
    for params in ({}, {"annotator": ""}, {"annotator": "  "}):
        r = client.get("/api/next", params=params)
        assert r.status_code == 422 and "annotator" in r.json()["detail"]


def test_repeated_answer_is_rejected_without_reannotation(client: TestClient, study) -> None:
    item = study.items[0]
    assert client.post("/api/answers", json=answer(item, label=1)).status_code == 201
    r = client.post("/api/answers", json=answer(item, label=2))
    assert r.status_code == 409 and "already answered" in r.json()["detail"]
    assert [row[2] for row in db_rows(study.study_dir)] == [1]  # first answer kept, nothing overwritten
    assert client.post("/api/answers", json=answer(item, label=2, annotator="bob")).status_code == 201


def test_database_enforces_unique_annotator_item(study) -> None:
    AnnotationDB(study.db_path, study.study_id, allow_reannotation=False).close()
    with sqlite3.connect(study.db_path) as conn:
        row = ("a", 1, 1, None, None, 1.0, "t", 0, 1, None)
        sql = (
            "INSERT INTO answers (annotator, item, label, second_label, confidence, response_ms, timestamp, "
            "is_attention_check, attempt, submission_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        conn.execute(sql, row)
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(sql, row[:8] + (2, None))  # same annotator and item, even as a new attempt
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reannotation_keeps_every_answer_numbered(tmp_path: Path) -> None:
    s = make_study(tmp_path, allow_reannotation=True)
    with annotating_client(s) as c:
        item = s.items[0]
        assert c.post("/api/answers", json=answer(item, label=1)).status_code == 201
        r = c.post("/api/answers", json=answer(item, label=2))
        assert r.status_code == 201 and r.json()["answer"]["attempt"] == 2
        assert c.get("/api/next", params={"annotator": "alice"}).json()["done"] == 1
    table = annotation_table(s.study_dir)
    assert table[["item", "label", "attempt"]].values.tolist() == [[item, 1, 1], [item, 2, 2]]


def test_submission_id_makes_retries_idempotent(client: TestClient, study) -> None:
    body = answer(study.items[0], submission_id="abc-123")
    first = client.post("/api/answers", json=body)
    retry = client.post("/api/answers", json=body)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["repeated_submission"] is True and retry.json()["answer"]["id"] == first.json()["answer"]["id"]
    other = client.post("/api/answers", json=answer(study.items[1], submission_id="abc-123"))
    assert other.status_code == 409 and "submission_id" in other.json()["detail"]
    assert len(db_rows(study.study_dir)) == 1


def test_study_without_confidence_or_second_choice_rejects_them(tmp_path: Path) -> None:
    s = make_study(tmp_path, confidence_min=None, confidence_max=None, second_choice=False)
    with annotating_client(s) as c:
        assert c.get("/api/study").json()["confidence"] is None
        r1 = c.post("/api/answers", json=answer(s.items[0], confidence=3))
        r2 = c.post("/api/answers", json=answer(s.items[0], second_label=4))
        assert (r1.status_code, r2.status_code) == (422, 422)
        assert "confidence" in r1.json()["detail"] and "second_label" in r2.json()["detail"]
        assert c.post("/api/answers", json=answer(s.items[0])).status_code == 201


# --------------------------------------------------------------------------- token and hosts


def test_token_required_when_enforced(study) -> None:
    with annotating_client(study, require_token=True) as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/study").status_code == 401
        no = c.post("/api/answers", json=answer(study.items[0]))
        wrong = c.post("/api/answers", json=answer(study.items[0]), headers={"X-Softlab-Token": "x" * 32})
        assert (no.status_code, wrong.status_code) == (401, 403)
        assert "token" in no.json()["detail"] and "token" in wrong.json()["detail"]
        assert db_rows(study.study_dir) == []
        ok = c.post("/api/answers", json=answer(study.items[0]), headers={"X-Softlab-Token": study.token})
        assert ok.status_code == 201
        assert c.get(f"/api/image/{study.items[0]}.png", params={"token": study.token}).status_code == 200
        assert c.get(f"/api/image/{study.items[0]}.png").status_code == 401


def test_loopback_server_needs_no_token_and_rejects_foreign_hosts(study) -> None:
    with annotating_client(study, allowed_hosts=["127.0.0.1", "localhost"], base_url="http://127.0.0.1:8765") as c:
        assert c.post("/api/answers", json=answer(study.items[0])).status_code == 201
        assert c.get("/api/study", headers={"host": "evil.example"}).status_code == 400
        assert c.get("/api/study", headers={"host": "evil.example:8765"}).status_code == 400
        assert c.get("/api/study", headers={"host": "localhost:8765"}).status_code == 200
    assert host_name("[::1]:8765") == "::1" and host_name("127.0.0.1") == "127.0.0.1" and host_name("::1") == "::1"


def test_refuses_non_loopback_host_without_token(study, capsys: pytest.CaptureFixture[str]) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.5.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    with pytest.raises(StudyError, match="refusing to serve"):
        serve(study.study_dir, host="0.0.0.0", port=0, require_token=False)
    assert main_annotate(["--study-dir", str(study.study_dir), "--host", "0.0.0.0", "--no-token"]) == 2
    assert "refusing to serve on non-loopback host" in capsys.readouterr().err


def test_database_of_another_study_is_refused(tmp_path: Path, study) -> None:
    other = make_study(tmp_path, name="other")  # same settings, yet another study
    assert other.study_id != study.study_id
    AnnotationDB(study.db_path, study.study_id, allow_reannotation=False).close()
    with pytest.raises(DatabaseMismatchError, match="study_id"):
        AnnotationDB(study.db_path, other.study_id, allow_reannotation=False)
    with pytest.raises(DatabaseMismatchError, match="allow_reannotation"):
        AnnotationDB(study.db_path, study.study_id, allow_reannotation=True)


# --------------------------------------------------------------------------- attention checks and export


def test_attention_checks_flagged_excluded_and_reported(tmp_path: Path) -> None:
    s = make_study(tmp_path, size=6, attention=2)
    assert len(s.attention_items) == 2 and not set(s.attention_items) & set(s.items)
    assert list(s.attention_labels) == [i % 10 for i in s.attention_items]
    a1, a2 = s.attention_items
    with annotating_client(s) as c:
        assert c.get("/api/study").json()["total"] == 8
        for item in s.items[:3]:
            c.post("/api/answers", json=answer(item, label=item % 10, annotator="ann"))
        c.post("/api/answers", json=answer(a1, label=a1 % 10, annotator="ann"))  # right
        c.post("/api/answers", json=answer(a2, label=(a2 + 1) % 10, annotator="ann"))  # wrong
        c.post("/api/answers", json=answer(a1, label=a1 % 10, annotator="bea"))  # right
        c.post("/api/answers", json=answer(s.items[0], label=0, annotator="cid"))  # no checks yet
        assert c.get("/api/next", params={"annotator": "ann"}).json()["done"] == 5
    main = annotation_table(s.study_dir)
    assert len(main) == 4 and not main["is_attention_check"].any()
    assert set(main["item"]) <= set(s.items)
    assert len(annotation_table(s.study_dir, include_attention=True)) == 7
    report = attention_report(s.study_dir).set_index("annotator")
    assert report.loc["ann", ["n_answers", "n_attention", "n_attention_correct"]].tolist() == [3, 2, 1]
    assert report.loc["ann", "attention_accuracy"] == pytest.approx(0.5)
    assert report.loc["bea", "attention_accuracy"] == pytest.approx(1.0)
    assert math.isnan(report.loc["cid", "attention_accuracy"])
    _, rep = export_annotations(s.study_dir, tmp_path / "answers.csv")
    assert rep == tmp_path / "answers.attention.csv"
    pd.testing.assert_frame_equal(pd.read_csv(rep), attention_report(s.study_dir), check_dtype=False)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_is_the_long_table_softlab_data_reads(tmp_path: Path, study, suffix: str) -> None:
    votes = {("alice", study.items[0]): 3, ("bob", study.items[0]): 5, ("alice", study.items[1]): 3}
    with annotating_client(study) as c:
        for (who, item), label in votes.items():
            c.post("/api/answers", json=answer(item, label=label, annotator=who, confidence=2))
    out = tmp_path / f"answers{suffix}"
    assert main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(out)]) == 0
    df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(df.columns[:4]) == ["item", "annotator", "label", "weight"]
    assert {"second_label", "confidence", "timestamp", "response_ms", "is_attention_check"} <= set(df.columns)
    assert sorted(zip(df["annotator"], df["item"], df["label"])) == sorted((w, i, lab) for (w, i), lab in votes.items())
    assert (df["weight"] == 1).all() and (df["response_ms"] >= 0).all() and (df["confidence"] == 2).all()
    clean = validate_annotations(df, n_classes=10, items=list(study.items))
    ids, counts = to_counts(clean, n_classes=10)
    np.testing.assert_array_equal(ids, sorted({study.items[0], study.items[1]}))
    expected = np.zeros((2, 10))
    expected[0, [3, 5]] = 1
    expected[1, 3] = 1
    np.testing.assert_array_equal(counts, expected)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_create_resume_and_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = make_images()
    np.save(tmp_path / "imgs.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    d = tmp_path / "cli-study"
    base = ["--images", str(tmp_path / "imgs.npy"), "--labels", str(tmp_path / "labels.npy"), "--study-dir", str(d)]
    assert (
        main_annotate(
            [
                *base,
                "--size",
                "12",
                "--seed",
                "3",
                "--attention-checks",
                "2",
                "--confidence-scale",
                "50-100",
                "--create-only",
            ]
        )
        == 0
    )
    s = open_study(d)
    assert (len(s.items), s.seed, len(s.attention_items)) == (12, 3, 2)
    assert (s.settings.confidence_min, s.settings.confidence_max) == (50, 100)
    assert main_annotate(["--study-dir", str(d), "--create-only"]) == 0  # resume without options
    assert main_annotate([*base, "--size", "12", "--seed", "3", "--create-only"]) == 0  # matching options
    assert main_annotate(["--study-dir", str(d), "--seed", "4", "--create-only"]) == 2
    assert "already holds a different study" in capsys.readouterr().err
    assert (
        main_annotate(
            [
                "--images",
                str(tmp_path / "imgs.npy"),
                "--study-dir",
                str(tmp_path / "x"),
                "--strategy",
                "uncertain",
                "--size",
                "5",
                "--create-only",
            ]
        )
        == 2
    )
    assert "--probs" in capsys.readouterr().err
    assert main_annotate(["--study-dir", str(tmp_path / "empty"), "--create-only"]) == 2
    assert "give --dataset or --images" in capsys.readouterr().err
    assert main_annotate(["report", "--study-dir", str(d)]) == 0
    assert "no answers yet" in capsys.readouterr().out


def test_cli_dataset_uses_softlab_data_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import softlab.data
    from softlab.data import ImageSet

    images, labels = make_images(40)
    names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    calls: list[tuple[str, str]] = []

    def fake_load_images(dataset: str, split: str) -> ImageSet:
        calls.append((dataset, split))
        if dataset != "fashion-mnist":
            raise ValueError(f"dataset: expected one of ['fashion-mnist'], got {dataset!r}")
        return ImageSet(dataset, split, images, labels, names)

    monkeypatch.setattr(softlab.data, "load_images", fake_load_images)
    d = tmp_path / "fm"
    assert (
        main_annotate(
            [
                "--dataset",
                "fashion-mnist",
                "--size",
                "10",
                "--strategy",
                "stratified",
                "--seed",
                "0",
                "--study-dir",
                str(d),
                "--create-only",
            ]
        )
        == 0
    )
    s = open_study(d)
    assert calls == [("fashion-mnist", "test")] and s.classes == names
    assert (s.dataset, s.split) == ("fashion-mnist", "test")
    assert np.bincount(labels[list(s.items)], minlength=10).tolist() == [1] * 10
    for i, img in s.load_images().items():
        np.testing.assert_array_equal(img, images[i])
    assert main_annotate(["--dataset", "nope", "--study-dir", str(tmp_path / "n"), "--create-only"]) == 2
    assert "--dataset nope" in capsys.readouterr().err


def test_cli_synthetic_mnist_comes_from_the_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # generated digits are not a data-layer set: the app asks softlab.generator, not load_images
    import softlab.data
    import softlab.generator
    from softlab.data import ImageSet

    images, labels = make_images(40)
    calls: list[str] = []

    def fake_load_synthetic_mnist(split: str) -> ImageSet:
        calls.append(split)
        return ImageSet("synthetic-mnist", split, images, labels, tuple(str(d) for d in range(10)))

    def no_load_images(dataset: str, split: str) -> ImageSet:
        raise AssertionError(f"load_images({dataset!r}, {split!r}) was called")

    monkeypatch.setattr(softlab.generator, "load_synthetic_mnist", fake_load_synthetic_mnist)
    monkeypatch.setattr(softlab.data, "load_images", no_load_images)
    d = tmp_path / "syn"
    args = ["--dataset", "synthetic-mnist", "--split", "all", "--size", "8", "--seed", "0", "--study-dir", str(d)]
    assert main_annotate([*args, "--create-only"]) == 0
    s = open_study(d)
    assert calls == ["all"] and (s.dataset, s.split) == ("synthetic-mnist", "all")
    for i, img in s.load_images().items():
        np.testing.assert_array_equal(img, images[i])


def test_cli_uncertain_reads_probs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = make_images()
    probs = np.full((N_IMAGES, 10), 0.01)
    probs[np.arange(N_IMAGES), labels] = 0.91
    probs[[2, 7, 19]] = 0.1  # the three most uncertain images
    np.save(tmp_path / "imgs.npy", images)
    np.save(tmp_path / "probs.npy", probs)
    args = ["--images", str(tmp_path / "imgs.npy"), "--strategy", "uncertain", "--size", "3", "--create-only"]
    assert main_annotate([*args, "--probs", str(tmp_path / "probs.npy"), "--study-dir", str(tmp_path / "u")]) == 0
    assert open_study(tmp_path / "u").items == (2, 7, 19)
    assert main_annotate([*args, "--probs", str(tmp_path / "missing.npy"), "--study-dir", str(tmp_path / "v")]) == 2
    assert "--probs: file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- hardening (issue 13)


def _asgi_post(app, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, list[int]]:
    """POST straight through the ASGI interface; return (status, sizes of the body chunks the app read)."""
    import asyncio

    read: list[int] = []
    pending = list(chunks)
    sent: list[dict] = []

    async def receive() -> dict:
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        read.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), read


def test_token_checked_before_body_is_read(study) -> None:
    app = create_app(study.study_dir, require_token=True)
    body = b"{this is not json"
    status, read = _asgi_post(app, "/api/answers", [body], [(b"content-length", str(len(body)).encode())])
    assert status == 401 and read == []  # refused without reading one byte of the body
    status, read = _asgi_post(app, "/api/answers", [body], [(b"x-softlab-token", b"wrong" * 8)])
    assert status == 403 and read == []
    with TestClient(create_app(study.study_dir, require_token=True)) as c:
        r = c.post("/api/answers", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 401 and "token" in r.json()["detail"]  # not a JSON parse error
        assert c.get("/api/health").status_code == 200  # health stays public
    assert db_rows(study.study_dir) == []


def test_body_above_limit_is_refused_with_413(client: TestClient, study) -> None:
    assert MAX_BODY_BYTES == 16 * 1024
    big = answer(study.items[0], submission_id="x" * 10) | {"padding": "x" * (MAX_BODY_BYTES + 1)}
    r = client.post("/api/answers", json=big)
    assert r.status_code == 413 and "16384 bytes" in r.json()["detail"]
    # streamed without Content-Length (chunked): refused once the limit is passed, not buffered whole
    app = create_app(study.study_dir)
    status, read = _asgi_post(app, "/api/answers", [b" " * 4096] * 64, [])
    assert status == 413 and sum(read) <= MAX_BODY_BYTES + 4096
    assert db_rows(study.study_dir) == []
    ok = client.post("/api/answers", json=answer(study.items[0]))  # a normal answer is far below the limit
    assert ok.status_code == 201


def test_annotator_cannot_answer_as_someone_else(study) -> None:
    item = study.items[0]
    with TestClient(create_app(study.study_dir)) as c:  # a client without anyone's link
        bare = c.post("/api/answers", json=answer(item, annotator="alice"))
        assert bare.status_code == 401 and "personal link" in bare.json()["detail"]
        bobs_key = {KEY_HEADER: annotator_key(study, "bob")}
        forged = c.post("/api/answers", json=answer(item, annotator="alice"), headers=bobs_key)
        assert forged.status_code == 403 and "alice" in forged.json()["detail"]
        assert db_rows(study.study_dir) == []  # bob could not take alice's place
        own = c.post(
            "/api/answers", json=answer(item, annotator="alice"), headers={KEY_HEADER: annotator_key(study, "alice")}
        )
        assert own.status_code == 201  # alice's first answer is hers, not a 409
        trimmed = c.get(
            "/api/next", params={"annotator": " alice "}, headers={KEY_HEADER: annotator_key(study, "alice")}
        )
        assert trimmed.json()["done"] == 1
    other = make_study(study.study_dir.parent, name="other")
    assert annotator_key(other, "alice") != annotator_key(study, "alice")  # a key is valid for one study only


def test_progress_visible_only_to_its_annotator(client: TestClient, study) -> None:
    assert client.post("/api/answers", json=answer(study.items[0], annotator="alice")).status_code == 201
    for headers in ({KEY_HEADER: ""}, {KEY_HEADER: annotator_key(study, "bob")}, {KEY_HEADER: "0" * 32}):
        r = client.get("/api/next", params={"annotator": "alice"}, headers=headers)
        assert r.status_code in (401, 403) and set(r.json()) == {"detail"}, r.text
    mine = client.get("/api/next", params={"annotator": "alice"})  # the hook adds alice's own key
    assert mine.status_code == 200 and mine.json()["done"] == 1


def test_links_command_prints_personal_links_the_server_accepts(study, capsys: pytest.CaptureFixture[str]) -> None:
    from urllib.parse import parse_qs, urlsplit

    assert (
        main_annotate(
            [
                "links",
                "--study-dir",
                str(study.study_dir),
                "--annotator",
                "alice",
                "001",
                "--base-url",
                "http://10.0.0.5:9000",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["alice", "001"]
    url = urlsplit(lines[1].split("\t")[1])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.scheme, url.netloc, url.path) == ("http", "10.0.0.5:9000", "/")
    assert query == {"annotator": "001", "key": annotator_key(study, "001"), "token": study.token}
    assert lines[1].split("\t")[1] == annotator_link(study, "001", "http://10.0.0.5:9000/")
    with TestClient(create_app(study.study_dir, require_token=True)) as c:
        headers = {KEY_HEADER: query["key"], "X-Softlab-Token": query["token"]}
        assert c.get("/api/next", params={"annotator": "001"}, headers=headers).status_code == 200
        assert c.get("/api/next", params={"annotator": "1"}, headers=headers).status_code == 403
    assert main_annotate(["links", "--study-dir", str(study.study_dir), "--annotator", "<b>"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("softlab annotate links: error: annotator:")


def test_annotations_sqlite_is_created_0600(client: TestClient, study) -> None:
    assert client.post("/api/answers", json=answer(study.items[0])).status_code == 201
    for name in ("annotations.sqlite", "annotations.sqlite-wal", "annotations.sqlite-shm"):
        path = study.study_dir / name
        if path.exists():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
    assert (study.study_dir / "annotations.sqlite").exists()


def test_annotations_sqlite_of_an_older_study_is_tightened_to_0600(study) -> None:
    path = study.db_path
    AnnotationDB(path, study.study_id, allow_reannotation=False).close()
    os.chmod(path, 0o644)
    AnnotationDB(path, study.study_id, allow_reannotation=False).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


TRICKY_IDS = ["001", "1", "NA", "null", "None", "nan", "TRUE", "0", "+49 170", "-1+2", "@here", "Zoë 李", "x"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_annotator_ids_keep_leading_zeros(tmp_path: Path, study, suffix: str) -> None:
    """The app's export reads back to exactly the exported table: `001` and `1` stay two
    annotators, `NA`/`null`/`None`/`nan`/`TRUE` stay text, formula-like ids stay as typed."""
    from softlab.data import read_annotations

    with annotating_client(study) as c:
        for k, who in enumerate(TRICKY_IDS):
            r = c.post("/api/answers", json=answer(study.items[k % 3], label=k % 10, annotator=who))
            assert r.status_code == 201, (who, r.text)
    out = tmp_path / f"answers{suffix}"
    assert main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(out)]) == 0
    back = read_annotations(out)
    pd.testing.assert_frame_equal(back, annotation_table(study.study_dir))  # dtypes included
    assert sorted(back["annotator"]) == sorted(TRICKY_IDS)
    clean = validate_annotations(back, n_classes=10, items=list(study.items))  # duplicates='reject': none
    assert len(clean) == len(TRICKY_IDS)


def test_export_csv_escapes_formula_cells(tmp_path: Path, study) -> None:
    with annotating_client(study) as c:
        for k, who in enumerate(["+1+1", "-2-3", "@SUM A1", "a+b", "plain"]):
            assert c.post("/api/answers", json=answer(study.items[k], annotator=who)).status_code == 201
    out = tmp_path / "answers.csv"
    export_annotations(study.study_dir, out)
    import csv

    with open(out, newline="", encoding="utf-8") as fh:
        cells = [row[1] for row in csv.reader(fh)][1:]
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in cells), cells
    assert sorted(cells) == sorted(["'+1+1", "'-2-3", "'@SUM A1", "a+b", "plain"])


def test_export_refuses_existing_target_unless_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = make_study(tmp_path, size=6, attention=2)
    with annotating_client(s) as c:
        assert c.post("/api/answers", json=answer(s.items[0])).status_code == 201
    out = tmp_path / "answers.csv"
    report = tmp_path / "answers.attention.csv"
    out.write_text("precious\n")
    args = ["export", "--study-dir", str(s.study_dir), "--out", str(out)]
    assert main_annotate(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert out.read_text() == "precious\n" and not report.exists()
    out.unlink()
    report.write_text("precious report\n")  # the attention report beside it is protected too
    assert main_annotate(args) == 2
    assert "answers.attention.csv" in capsys.readouterr().err
    assert not out.exists() and report.read_text() == "precious report\n"
    assert main_annotate([*args, "--force"]) == 0
    assert len(pd.read_csv(out)) == 1 and "n_attention" in report.read_text()


def test_export_to_unwritable_target_is_one_line_error(
    tmp_path: Path, study, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    assert (
        main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(tmp_path / "a-file" / "a.csv")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("softlab annotate export: error: ") and "a-file" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # (root can write anywhere: then the case above suffices)
            assert main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(locked / "a.csv")]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Permission denied" in err and "Traceback" not in err
    finally:
        locked.chmod(0o700)


def test_annotate_offline_creates_study_from_local_data_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import urllib.request

    from softlab.data import images as image_data

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("the network was used although offline")

    npm_calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> object:  # npm may only read its local cache
        npm_calls.append(list(cmd))
        import subprocess

        return subprocess.CompletedProcess(cmd, 1, "", "npm ERR! offline: not in the local cache")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(image_data.subprocess, "run", fake_run)
    monkeypatch.setattr(image_data, "_NPM_CACHE", {})
    monkeypatch.setattr(image_data, "_MEMO", {})
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "empty-data"))
    monkeypatch.setenv("SOFTLAB_OFFLINE", "0")  # restored after the test (the command sets it to 1)
    argv = ["--dataset", "mnist", "--size", "5", "--study-dir", str(tmp_path / "s"), "--create-only", "--offline"]
    assert main_annotate(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offline" in err and "network" in err
    assert not (tmp_path / "s" / "study.json").exists()
    assert all("--offline" in cmd for cmd in npm_calls)
