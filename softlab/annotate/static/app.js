// softlab annotate: the annotation page (vanilla JS, no build step, no external resources).
//
// Flow: open the personal link (?annotator=ID&key=KEY[&token=T]) -> GET /api/next -> show the
// image -> pick a class (click or 0-9), optionally a second choice (Shift+0-9) and a
// confidence -> Submit (Enter) -> POST /api/answers -> next item. Progress comes from the
// server, so a reload resumes. The key proves the annotator id: it is sent as the header
// X-Softlab-Annotator-Key with every request that acts as the annotator.
"use strict";

(function () {
  const ANNOTATOR_KEY = "softlab-annotate-annotator";
  const KEY_KEY = "softlab-annotate-key";
  const TOKEN_KEY = "softlab-annotate-token";
  const CONFIDENCE_KEYS = "qwertyuiop";

  const $ = (id) => document.getElementById(id);
  const state = {
    study: null,
    annotator: null,
    item: null,
    label: null,
    second: null,
    confidence: null,
    shownAt: null,       // performance.now() when the image finished loading
    submissionId: null,  // reused when the same answer is retried
    busy: false,
  };

  // ---------------------------------------------------------------- token & requests

  const params = new URLSearchParams(window.location.search);
  if (params.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (params.get("annotator") && params.get("key")) {
    sessionStorage.setItem(ANNOTATOR_KEY, params.get("annotator"));
    sessionStorage.setItem(KEY_KEY, params.get("key"));
  }
  const annotatorKey = sessionStorage.getItem(KEY_KEY);

  function withToken(url) {
    if (!token) return url;
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }

  async function api(method, url, body) {
    const headers = { "Accept": "application/json" };
    if (token) headers["X-Softlab-Token"] = token;
    if (annotatorKey) headers["X-Softlab-Annotator-Key"] = annotatorKey;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail ? data.detail : ("HTTP " + response.status);
      const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      err.status = response.status;
      throw err;
    }
    return data;
  }

  function newSubmissionId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ---------------------------------------------------------------- view helpers

  function say(text, info) {
    const m = $("message");
    m.textContent = text || "";
    m.className = info ? "info" : "";
  }

  function showSection(name) {
    for (const s of ["login", "annotate", "done"]) $(s).hidden = s !== name;
  }

  function setProgress(p) {
    $("progress").textContent = p.done + " / " + p.total;
    const bar = $("progress-bar");
    bar.hidden = false;
    bar.max = p.total;
    bar.value = p.done;
    $("who").textContent = "annotator: " + p.annotator;
  }

  function makeButton(text, key, attrs, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    if (key !== null) {
      const k = document.createElement("span");
      k.className = "key";
      k.textContent = key;
      b.appendChild(k);
    }
    b.appendChild(document.createTextNode(text));
    for (const [name, value] of Object.entries(attrs)) b.setAttribute(name, value);
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", onClick);
    return b;
  }

  function buildChoices(study) {
    const classes = $("classes");
    const second = $("second");
    classes.textContent = "";
    second.textContent = "";
    study.classes.forEach((name, i) => {
      const key = i < 10 ? String(i) : null;
      classes.appendChild(makeButton(name, key, { "class": "class-button", "data-label": String(i) },
        () => selectLabel(i)));
      second.appendChild(makeButton(name, key, { "class": "second-button", "data-label": String(i) },
        () => selectSecond(i)));
    });
    $("second-question").hidden = !study.second_choice;
    const conf = $("confidence");
    conf.textContent = "";
    if (study.confidence) {
      const values = [];
      for (let v = study.confidence.min; v <= study.confidence.max; v++) values.push(v);
      const keyed = values.length <= CONFIDENCE_KEYS.length;
      values.forEach((v, k) => {
        conf.appendChild(makeButton(String(v), keyed ? CONFIDENCE_KEYS[k] : null,
          { "class": "confidence-button", "data-value": String(v) }, () => selectConfidence(v)));
      });
      $("confidence-keys").textContent = keyed ? CONFIDENCE_KEYS.slice(0, values.length).split("").join(" ") : "-";
      $("confidence-question").hidden = false;
    } else {
      $("confidence-question").hidden = true;
    }
  }

  function refreshChoices() {
    for (const b of document.querySelectorAll(".class-button")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.label) === state.label));
    }
    for (const b of document.querySelectorAll(".second-button")) {
      const l = Number(b.dataset.label);
      b.setAttribute("aria-pressed", String(l === state.second));
      b.disabled = l === state.label;
    }
    for (const b of document.querySelectorAll(".confidence-button")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.value) === state.confidence));
    }
    $("submit-button").disabled = state.label === null || state.shownAt === null || state.busy;
  }

  function clearChoices() {
    state.label = null;
    state.second = null;
    state.confidence = null;
    state.submissionId = null;
    refreshChoices();
  }

  // ---------------------------------------------------------------- choices

  function selectLabel(i) {
    if (state.item === null || i >= state.study.classes.length) return;
    state.label = i;
    if (state.second === i) state.second = null;
    state.submissionId = null;
    refreshChoices();
  }

  function selectSecond(i) {
    if (state.item === null || !state.study.second_choice || i >= state.study.classes.length) return;
    if (i === state.label) return;
    state.second = state.second === i ? null : i;  // clicking again removes it
    state.submissionId = null;
    refreshChoices();
  }

  function selectConfidence(v) {
    if (state.item === null || !state.study.confidence) return;
    state.confidence = state.confidence === v ? null : v;
    state.submissionId = null;
    refreshChoices();
  }

  // ---------------------------------------------------------------- flow

  function show(progress) {
    setProgress(progress);
    if (progress.finished) {
      state.item = null;
      showSection("done");
      return;
    }
    showSection("annotate");
    state.item = progress.item;
    state.shownAt = null;
    clearChoices();
    const img = $("image");
    img.dataset.item = String(progress.item);
    const src = new URL(withToken(progress.image_url), window.location.href).href;
    if (img.src === src && img.complete && img.naturalWidth > 0) {
      state.shownAt = performance.now();  // same image already loaded: no new load event
      refreshChoices();
    } else {
      img.src = src;
    }
  }

  async function start(annotator) {
    const id = (annotator || "").trim();
    if (!id || !annotatorKey) {
      showSection("login");
      return;
    }
    say("");
    try {
      const progress = await api("GET", "/api/next?annotator=" + encodeURIComponent(id));
      state.annotator = progress.annotator;
      show(progress);
    } catch (err) {
      showSection("login");
      say(err.message);
    }
  }

  async function submit() {
    if (state.busy || state.item === null || state.label === null || state.shownAt === null) return;
    state.busy = true;
    refreshChoices();
    if (!state.submissionId) state.submissionId = newSubmissionId();
    const body = {
      annotator: state.annotator,
      item: state.item,
      label: state.label,
      response_ms: Math.max(0, Math.round(performance.now() - state.shownAt)),
      submission_id: state.submissionId,
    };
    if (state.second !== null) body.second_label = state.second;
    if (state.confidence !== null) body.confidence = state.confidence;
    try {
      const result = await api("POST", "/api/answers", body);
      say("");
      state.busy = false;
      show(result.progress);
    } catch (err) {
      state.busy = false;
      if (err.status === 409) {
        // Already answered (e.g. in another tab): move on to the next unanswered item.
        say(err.message, true);
        await start(state.annotator);
      } else if (err.status === undefined) {
        say("Could not reach the server; your answer was not lost: press Submit again. (" + err.message + ")");
        refreshChoices();
      } else {
        say(err.message);
        refreshChoices();
      }
    }
  }

  // ---------------------------------------------------------------- keyboard

  function digitOf(event) {
    const m = /^(?:Digit|Numpad)([0-9])$/.exec(event.code || "");
    if (m) return Number(m[1]);
    if (/^[0-9]$/.test(event.key)) return Number(event.key);
    return null;
  }

  function onKey(event) {
    if ($("annotate").hidden || state.item === null) return;
    if (event.target && (event.target.tagName === "INPUT" || event.target.tagName === "TEXTAREA")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const digit = digitOf(event);
    if (digit !== null) {
      event.preventDefault();
      if (event.shiftKey) selectSecond(digit); else selectLabel(digit);
      return;
    }
    if (event.key === "Enter") {
      event.preventDefault();
      submit();
      return;
    }
    if (event.key === "Escape") {
      event.preventDefault();
      clearChoices();
      return;
    }
    const k = CONFIDENCE_KEYS.indexOf((event.key || "").toLowerCase());
    if (k >= 0 && state.study.confidence) {
      const v = state.study.confidence.min + k;
      if (v <= state.study.confidence.max && CONFIDENCE_KEYS.length >= state.study.confidence.max - state.study.confidence.min + 1) {
        event.preventDefault();
        selectConfidence(v);
      }
    }
  }

  // ---------------------------------------------------------------- start-up

  async function init() {
    $("image").addEventListener("load", () => {
      state.shownAt = performance.now();
      refreshChoices();
    });
    $("image").addEventListener("error", () => say("Could not load the image; reload the page."));
    $("submit-button").addEventListener("click", submit);
    $("clear-button").addEventListener("click", clearChoices);
    document.addEventListener("keydown", onKey);
    try {
      state.study = await api("GET", "/api/study");
    } catch (err) {
      showSection("login");
      say(err.message);
      return;
    }
    buildChoices(state.study);
    await start(sessionStorage.getItem(ANNOTATOR_KEY));
    document.body.dataset.ready = "true";
  }

  init();
})();
