// The web console: streams answers from /v1/chat/completions and shows the cited sources.
// No build step and no dependencies: plain browser JavaScript talking to the service over HTTP.
"use strict";

const STORAGE_KEY = "onprem-rag.conversation";
const SNIPPET_CHARS = 280;

const log = document.getElementById("log");
const form = document.getElementById("ask");
const question = document.getElementById("question");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const modelLabel = document.getElementById("model");

let model = "rag";
let turns = loadTurns(); // [{role, content, sources?, error?}]
let controller = null;

function loadTurns() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "[]");
  } catch {
    return [];
  }
}

function saveTurns() {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(turns));
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Inline `code` spans (answers quote paths and commands from the documents); text is already escaped.
function inlineCode(html) {
  return html.replace(/`([^`\n]+)`/g, "<code>$1</code>");
}

// Escape the answer, then turn each [n] (or [1, 2]) into superscript links to its source entry.
// The space before a marker goes with it: "14 days [1]." reads as "14 days¹." like a footnote.
function renderAnswer(text, anchor) {
  return inlineCode(escapeHtml(text)).replace(/[ \t]*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g, (_, list) =>
    list
      .split(",")
      .map((n) => n.trim())
      .map((n) => `<sup><a href="#${anchor}-${n}" title="Source ${n}">[${n}]</a></sup>`)
      .join(""),
  );
}

// A passage as one plain line: Markdown heading marks dropped, whitespace collapsed, cut to length.
function snippetText(text) {
  let snippet = (text || "")
    .replace(/(^|\n)\s*#{1,6}\s+/g, "$1")
    .replace(/\s+/g, " ")
    .trim();
  if (snippet.length > SNIPPET_CHARS) snippet = snippet.slice(0, SNIPPET_CHARS - 1).trimEnd() + "…";
  return snippet;
}

// Open WebUI's source event: one document with parallel lists of passages and their metadata.
function sourcesFromEvent(data) {
  const out = [];
  const docs = data.document || [];
  (data.metadata || []).forEach((meta, i) => {
    // The number comes from meta.n when the service sends it, else from the "[n] title" name.
    const match = /^\[(\d+)\]\s*(.*)$/.exec(meta.name || "");
    out.push({
      n: Number.isInteger(meta.n) ? meta.n : match ? Number(match[1]) : out.length + 1,
      title: match ? match[2] : meta.name || data.source?.name || "",
      source: data.source?.id || (meta.source || "").split("#")[0],
      section: meta.section || "",
      // Source events carry 0-based pages (Open WebUI's convention); people read 1-based ones.
      page: Number.isInteger(meta.page) ? meta.page + 1 : null,
      snippet: docs[i] || "",
    });
  });
  return out;
}

function renderSources(sources, anchor) {
  if (!sources || !sources.length) return "";
  const items = [...sources]
    .sort((a, b) => a.n - b.n)
    .map((s) => {
      const where = [s.section, s.page != null ? `p. ${s.page}` : ""].filter(Boolean).join(", ");
      const snippet = snippetText(s.snippet);
      return (
        `<li id="${anchor}-${s.n}"><span class="n">[${s.n}]</span>` +
        `<strong>${escapeHtml(s.title || s.source)}</strong>` +
        (where ? `<span class="where">${escapeHtml(where)}</span>` : "") +
        `<span class="snippet">${inlineCode(escapeHtml(snippet))}</span>` +
        `<span class="uri">${escapeHtml(s.source)}</span></li>`
      );
    });
  return `<ol class="sources">${items.join("")}</ol>`;
}

function errorText(error, status) {
  if (!error) return `request failed${status ? ` (HTTP ${status})` : ""}`;
  const code = error.code ? ` [${error.code}]` : "";
  const param = error.param ? ` (field: ${error.param})` : "";
  return `${error.message}${param}${code}${status ? ` — HTTP ${status}` : ""}`;
}

function turnElement(turn, index) {
  const el = document.createElement("div");
  el.className = `msg ${turn.role}`;
  if (turn.role === "user") {
    el.textContent = turn.content;
    return el;
  }
  const anchor = `src-${index}`;
  el.innerHTML =
    (turn.content || !turn.error ? `<div class="text">${renderAnswer(turn.content || "", anchor)}</div>` : "") +
    renderSources(turn.sources, anchor) +
    (turn.error ? `<div class="error">Error: ${escapeHtml(turn.error)}</div>` : "");
  return el;
}

function renderAll() {
  log.querySelectorAll(".msg").forEach((el) => el.remove());
  turns.forEach((turn, i) => log.appendChild(turnElement(turn, i)));
  log.scrollTop = log.scrollHeight;
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.hidden = !busy;
  question.disabled = busy;
}

// Yields the data payload of each server-sent event in a fetch response.
async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield data;
    }
  }
}

async function ask(text) {
  // A question whose answer failed before any text is left out of the history sent for follow-ups.
  const history = turns
    .filter((t, i) => {
      const failed = (a) => a && a.role === "assistant" && a.error && !a.content;
      return !failed(t) && !(t.role === "user" && failed(turns[i + 1]));
    })
    .map((t) => ({ role: t.role, content: t.content }));
  turns.push({ role: "user", content: text });
  const answer = { role: "assistant", content: "", sources: [] };
  turns.push(answer);
  const index = turns.length - 1;
  renderAll();
  const el = log.lastElementChild;
  el.classList.add("cursor");
  const update = () => {
    const fresh = turnElement(answer, index);
    fresh.classList.add("cursor");
    el.replaceChildren(...fresh.childNodes);
    log.scrollTop = log.scrollHeight;
  };

  controller = new AbortController();
  setBusy(true);
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, stream: true, messages: [...history, { role: "user", content: text }] }),
      signal: controller.signal,
    });
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        /* not JSON: fall back to the status */
      }
      answer.error = errorText(body && body.error, response.status);
      return;
    }
    for await (const data of sseData(response)) {
      if (data === "[DONE]") break;
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue;
      }
      if (chunk.error) {
        answer.error = errorText(chunk.error);
      } else if (chunk.event && chunk.event.type === "source") {
        answer.sources.push(...sourcesFromEvent(chunk.event.data || {}));
      } else if (chunk.choices && chunk.choices.length) {
        answer.content += chunk.choices[0].delta?.content || "";
      }
      update();
    }
  } catch (err) {
    answer.error = err.name === "AbortError" ? "stopped" : `could not reach the service (${err.message})`;
  } finally {
    controller = null;
    setBusy(false);
    saveTurns();
    renderAll();
    question.focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text || controller) return;
  question.value = "";
  ask(text);
});

question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", () => controller && controller.abort());

document.getElementById("new-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  turns = [];
  saveTurns();
  renderAll();
  question.focus();
});

fetch("/v1/models")
  .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
  .then((list) => {
    const card = list.data && list.data[0];
    if (!card) return;
    model = card.id;
    const backend = card.rag ? ` · ${card.rag.chat_backend} · ${card.rag.collection}` : "";
    modelLabel.textContent = `${card.id}${backend}`;
  })
  .catch(() => {
    modelLabel.textContent = "service not reachable";
  });

renderAll();
question.focus();
