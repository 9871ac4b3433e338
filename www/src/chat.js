// Section 5, Try it, for chat models: one conversation with the base model and one with the adapted model, side by side, with sampling settings and Stop; the conversation as its project keeps it.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText } from "./dom.js";
import { fmtInt } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state, workChanged } from "./state.js";
import { refreshButtons } from "./buttons.js";
import { MAX_TRANSCRIPT } from "./transcript.js";

// Each side keeps its own history: the same user messages, and that model's own replies,
// so the second reply of each builds on its own first one. The package's worker runs one
// request at a time, so the base model answers first, then the adapted one. A side's
// messages are what its transcript shows ({ role, content, note? }: the note says why a
// reply ended early), and its history is their roles and texts.
const SIDES = [
  { adapter: false, key: "base", log: "chat-base", who: "Base model", messages: [] },
  { adapter: true, key: "adapted", log: "chat-adapted", who: "Adapted model", messages: [] },
];
const NO_ADAPTER = "(no adapter yet: train or load one, then the adapted model answers here too)";

// What the conversation is held with: the model (state.modelKey) and the adapted side's adapter
// (`adapterNow`), from its first message; `dropped`: its first exchanges a project left out;
// `restored`: shown again from a project, so it goes on only with that model and adapter.
let conv = { model: null, adapter: "none", dropped: 0, restored: false };
// The conversation as the project keeps it (transcript.js), taken when an exchange ends: a
// reply in progress is never saved half-way.
let snapshot = null;

/** The adapter the adapted side answers with: "none", a project's run ("<project id>/<run n>"), or "unsaved" (an adapter no project keeps). */
const adapterNow = () => (state.adapter === "none" ? "none" : state.adapterRun ?? "unsaved");
const isRun = (adapter) => adapter.includes("/");
const runOf = (adapter) => adapter.split("/")[1];
/** Whether a restored conversation can go on: its model and its adapter (one a project keeps) are on the page. */
const fits = () => conv.model === state.modelKey && conv.adapter === adapterNow() && conv.adapter !== "unsaved";

/** The conversation as its project keeps it, or null when there is none. */
export const chatTranscript = () => snapshot;

/** Takes the snapshot the project saves (after an exchange, or a new conversation). */
function keep() {
  snapshot = SIDES[0].messages.length ? { model: conv.model, adapter: conv.adapter, dropped: conv.dropped, base: SIDES[0].messages.slice(), adapted: SIDES[1].messages.slice() } : null;
  workChanged({ now: true });
}

/** Section 5 shows the chat for a causal-lm task on a model with a chat template (else the single-prompt comparison). */
export const chatFits = (causal) => causal && !!state.tuner?.info.hasChatTemplate;

/** Appends a message to a side's transcript; returns the element its text goes in. */
function addMessage(side, role, text) {
  const log = $(side.log);
  log.querySelector(".chat-note")?.remove();
  const msg = Object.assign(document.createElement("div"), { className: `chat-msg ${role}` });
  msg.dataset.role = role;
  const who = Object.assign(document.createElement("span"), { className: "who", textContent: role === "user" ? "You: " : `${side.who}: ` });
  const body = Object.assign(document.createElement("span"), { className: "text", textContent: text });
  msg.append(who, body);
  log.appendChild(msg);
  log.scrollTop = log.scrollHeight;
  return body;
}

/** A line under a reply: why it ended early. */
function noteReply(body, text) {
  body.after(Object.assign(document.createElement("span"), { className: "reply-note", textContent: ` ${text}` }));
}

function showNoAdapter() {
  const log = $("chat-adapted");
  if (state.adapter !== "none" || SIDES[1].messages.length || log.querySelector(".chat-note")) return;
  log.replaceChildren(Object.assign(document.createElement("p"), { className: "chat-note hint", textContent: NO_ADAPTER }));
}

/** Clears both conversations: the next message starts fresh on both sides. */
export function newConversation(status = "") {
  const had = SIDES[0].messages.length > 0;
  for (const side of SIDES) {
    side.messages = [];
    $(side.log).replaceChildren();
  }
  conv = { model: null, adapter: "none", dropped: 0, restored: false };
  showNoAdapter();
  setText("chat-status", status);
  if (had) keep();
}

/** Shows a conversation its project kept (transcript.js's shape) again; it goes on only with the model and adapter it was held with. */
export function restoreConversation(t) {
  conv = { model: t.model, adapter: t.adapter, dropped: t.dropped, restored: true };
  snapshot = t;
  for (const side of SIDES) {
    side.messages = t[side.key].slice();
    const log = $(side.log);
    log.replaceChildren();
    if (t.dropped && side.messages.length) {
      const left = `(${fmtInt(t.dropped)} earlier exchange${t.dropped === 1 ? " is" : "s are"} not shown: a project keeps the last ${MAX_TRANSCRIPT / 1024} KB of a conversation)`;
      log.append(Object.assign(document.createElement("p"), { className: "hint", textContent: left }));
    }
    for (const m of side.messages) {
      const body = addMessage(side, m.role, m.content);
      if (m.note) noteReply(body, m.note);
    }
  }
  showNoAdapter();
  const back = "The conversation saved with this project is back";
  let status = `${back}; your next message goes on with it.`;
  if (isRun(conv.adapter) && !fits()) status = `${back}. It was held with run ${runOf(conv.adapter)}'s adapter: load it (section 6) to go on with it; a message sent without it starts a new conversation.`;
  else if (!fits()) status = `${back}, to read: it was held with a model or adapter that is not on the page now, so your next message starts a new conversation.`;
  setText("chat-status", status);
}

/** The sampling settings as `tuner.chat` takes them; a bad max-new-tokens is an input error. */
function sampling() {
  const maxNewTokens = Number($("chat-max-tokens").value);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new WebPeftError("input", "max new tokens must be a whole number, 1 or more", "max new tokens");
  return { temperature: Number($("chat-temperature").value), topP: Number($("chat-top-p").value), maxNewTokens };
}

async function send() {
  clearError("try");
  const t = state.tuner;
  if (!t || state.chatting || state.training) return;
  const text = $("chat-input").value.trim();
  let opts;
  try {
    if (!text) throw new WebPeftError("input", "type a message first", "message");
    opts = sampling();
  } catch (e) {
    return showError("try", e);
  }
  $("chat-input").value = "";
  if (conv.restored && !fits()) newConversation();
  // A new conversation is held with the model and adapter on the page now.
  if (!SIDES[0].messages.length) conv = { model: state.modelKey, adapter: adapterNow(), dropped: 0, restored: false };
  const ctl = new AbortController();
  state.chatting = ctl;
  refreshButtons();
  // One seed for both sides: at the same settings, what differs between them is the adapter.
  const seed = crypto.getRandomValues(new Uint32Array(1))[0];
  const sides = SIDES.filter((s) => !s.adapter || state.adapter !== "none");
  for (const side of sides) {
    side.messages.push({ role: "user", content: text });
    addMessage(side, "user", text);
  }
  let ended = null; // "stopped" or the error that ended this exchange
  try {
    for (const side of sides) {
      const body = addMessage(side, "assistant", "");
      let note = "(not answered: stopped)";
      if (!ended) {
        ended = await reply(t, side, body, { ...opts, seed, signal: ctl.signal });
        note = ended === "stopped" ? "(stopped)" : ended ? "(failed)" : null;
      }
      if (note) noteReply(body, note);
      // The history keeps what the transcript shows (a cut reply too), so the turns stay in step.
      side.messages.push({ role: "assistant", content: body.textContent, ...(note && { note }) });
    }
  } finally {
    if (state.chatting === ctl) state.chatting = null;
    refreshButtons();
    keep();
  }
  if (ended === "stopped") setText("chat-status", "Stopped: the partial reply is kept.");
  else if (ended) setText("chat-status", "");
  else setText("chat-status", sides.length > 1 ? "Both models answered." : "The base model answered; train or load an adapter to compare.");
}

/** One side's reply, streamed into `body`; null when it finished, "stopped" for Stop, else the error (shown). */
async function reply(t, side, body, opts) {
  setText("chat-status", `The ${side.adapter ? "adapted" : "base"} model is answering…`);
  const log = $(side.log);
  // Screen readers read the reply once it is complete, not token by token.
  log.setAttribute("aria-busy", "true");
  try {
    const text = await t.chat(side.messages.map(({ role, content }) => ({ role, content })), {
      ...opts,
      adapter: side.adapter,
      onToken: (piece) => {
        body.textContent += piece;
        log.scrollTop = log.scrollHeight;
      },
    });
    body.textContent = text;
    return null;
  } catch (e) {
    // Stop aborts the request: a normal end, the text so far stays.
    if (e?.kind === "aborted") return "stopped";
    showError("try", e);
    return e;
  } finally {
    log.setAttribute("aria-busy", "false");
  }
}

function stop() {
  if (!state.chatting) return;
  setText("chat-status", "Stopping…");
  state.chatting.abort();
}

/** The value a slider shows next to it (and says to a screen reader). */
function showSlider(id, say) {
  const el = $(id);
  const text = say(Number(el.value));
  setText(`${id}-value`, text);
  el.setAttribute("aria-valuetext", text);
}
const showTemperature = () => showSlider("chat-temperature", (v) => (v === 0 ? "0 (greedy)" : String(v)));
const showTopP = () => showSlider("chat-top-p", String);

export function wireChat() {
  $("chat-send").addEventListener("click", () => {
    $("chat-input").focus(); // the Send button disables itself while the models answer
    send();
  });
  $("chat-stop").addEventListener("click", () => {
    stop();
    $("chat-input").focus();
  });
  $("chat-new").addEventListener("click", () => {
    newConversation("New conversation: both models start fresh.");
    $("chat-input").focus();
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.chatting) {
      e.preventDefault();
      stop();
    } else if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey && !e.isComposing) {
      e.preventDefault();
      if (!$("chat-send").disabled) send();
    }
  });
  $("chat-temperature").addEventListener("input", showTemperature);
  $("chat-top-p").addEventListener("input", showTopP);
  showTemperature();
  showTopP();
  showNoAdapter();
  // Replies from another adapter (a new run, a loaded adapter, another model) do not belong in
  // these conversations; a project's run put back on the model goes on with its own.
  document.addEventListener("webpeft:adapter-changed", () => {
    const had = SIDES[0].messages.length > 0;
    if (had && isRun(conv.adapter) && conv.model === state.modelKey && conv.adapter === adapterNow()) {
      setText("chat-status", `Run ${runOf(conv.adapter)}'s adapter is on the model again: the conversation goes on with it.`);
      return;
    }
    newConversation(had ? "The adapter changed, so a new conversation started." : "");
  });
}
