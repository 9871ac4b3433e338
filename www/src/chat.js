// Section 5, Try it, for chat models: one conversation with the base model and one with the adapted model, side by side, with sampling settings and Stop.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText } from "./dom.js";
import { showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { refreshButtons } from "./buttons.js";

// Each side keeps its own history: the same user messages, and that model's own replies,
// so the second reply of each builds on its own first one. The package's worker runs one
// request at a time, so the base model answers first, then the adapted one.
const SIDES = [
  { adapter: false, log: "chat-base", who: "Base model", history: [] },
  { adapter: true, log: "chat-adapted", who: "Adapted model", history: [] },
];
const NO_ADAPTER = "(no adapter yet: train or load one, then the adapted model answers here too)";

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
  if (state.adapter !== "none" || log.querySelector(".chat-note")) return;
  log.replaceChildren(Object.assign(document.createElement("p"), { className: "chat-note hint", textContent: NO_ADAPTER }));
}

/** Clears both conversations: the next message starts fresh on both sides. */
export function newConversation(status = "") {
  for (const side of SIDES) {
    side.history = [];
    $(side.log).replaceChildren();
  }
  showNoAdapter();
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
  const ctl = new AbortController();
  state.chatting = ctl;
  refreshButtons();
  // One seed for both sides: at the same settings, what differs between them is the adapter.
  const seed = crypto.getRandomValues(new Uint32Array(1))[0];
  const sides = SIDES.filter((s) => !s.adapter || state.adapter !== "none");
  for (const side of sides) {
    side.history.push({ role: "user", content: text });
    addMessage(side, "user", text);
  }
  let ended = null; // "stopped" or the error that ended this exchange
  try {
    for (const side of sides) {
      const body = addMessage(side, "assistant", "");
      if (ended) {
        noteReply(body, "(not answered: stopped)");
      } else {
        ended = await reply(t, side, body, { ...opts, seed, signal: ctl.signal });
      }
      // The history keeps what the transcript shows (a cut reply too), so the turns stay in step.
      side.history.push({ role: "assistant", content: body.textContent });
    }
  } finally {
    if (state.chatting === ctl) state.chatting = null;
    refreshButtons();
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
    const text = await t.chat(side.history, {
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
    if (e?.kind === "aborted") {
      noteReply(body, "(stopped)");
      return "stopped";
    }
    noteReply(body, "(failed)");
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
  // Replies from another adapter (a new run, a loaded adapter, another model) do not belong in these conversations.
  document.addEventListener("webpeft:adapter-changed", () => {
    const had = SIDES.some((s) => s.history.length);
    newConversation(had ? "The adapter changed, so a new conversation started." : "");
  });
}
