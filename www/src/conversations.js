// Section 2, Data: the conversations editor (chat models): example chats (an optional system prompt, then user and assistant turns), JSONL import and export, used as the training data.
import { debounced } from "./debounce.js";
import { $, setText, saveAs } from "./dom.js";
import { fmtInt } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { useData, clearData, validate, problemsLine, problemText } from "./data.js";

// The typed conversations become the data exactly as a file with the same
// content would: JSON lines of {"messages": [...]} called conversations.jsonl,
// checked by the core (useData → Tuner.validateData, with the model's chat
// template once a model is loaded) and trained from as it is, loss on the
// assistant turns. Editing any turn makes the editor the data again (a file
// chosen later replaces it), as the classification editor (examples.js) does.
export const CONVERSATIONS_NAME = "conversations.jsonl";
const ROLES = ["user", "assistant"];
let nextKey = 1;
// The conversation (1-based, as numbered in the editor) of each line of the editor's file:
// conversations with no turns yet are left out, so line N is not always conversation N.
let lineConversation = [];

const blocks = () => [...$("conversation-list").querySelectorAll(".conversation")];
const turnsOf = (block) => [...block.querySelectorAll(".turn")];

/** A conversation's messages as typed: the system prompt (if any) first, then the turns; blank ones dropped, each trimmed. */
function messagesOf(block) {
  const system = block.querySelector(".system-prompt").value.trim();
  const turns = turnsOf(block)
    .map((t) => ({ role: t.querySelector("select").value, content: t.querySelector("textarea").value.trim() }))
    .filter((m) => m.content);
  return turns.length ? [...(system ? [{ role: "system", content: system }] : []), ...turns] : [];
}

/** The editor as the file it trains from: one {"messages": [...]} line per conversation with turns. */
function editorFile() {
  const lines = [];
  const conv = [];
  blocks().forEach((b, i) => {
    const messages = messagesOf(b);
    if (!messages.length) return;
    lines.push(JSON.stringify({ messages }));
    conv.push(i + 1);
  });
  return { text: lines.length ? lines.join("\n") + "\n" : "", conversations: conv };
}

/** Adds a turn to a conversation block (after the others); its role is the other one than the last turn's unless given. */
function addTurn(block, role, content = "") {
  const last = turnsOf(block).at(-1)?.querySelector("select").value;
  role ??= last === "user" ? "assistant" : "user";
  const key = nextKey++;
  const turn = Object.assign(document.createElement("div"), { className: "turn" });
  const roleLabel = Object.assign(document.createElement("label"), { htmlFor: `turn-role-${key}`, className: "sr-only" });
  const select = Object.assign(document.createElement("select"), { id: `turn-role-${key}` });
  for (const r of ROLES) select.add(new Option(r, r, false, r === role));
  const textLabel = Object.assign(document.createElement("label"), { htmlFor: `turn-text-${key}`, className: "sr-only" });
  const text = Object.assign(document.createElement("textarea"), { id: `turn-text-${key}`, rows: 2, value: content });
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "secondary remove-turn", textContent: "Remove" });
  remove.addEventListener("click", () => removeTurn(turn));
  select.addEventListener("change", () => labelBlocks());
  turn.append(roleLabel, select, textLabel, text, remove);
  block.querySelector(".turns").appendChild(turn);
  labelBlocks();
  return turn;
}

/** Adds a conversation block (system prompt, turns, add/remove buttons); `messages` as the core's rows hold them. Returns it. */
function addConversation(messages = [{ role: "user", content: "" }, { role: "assistant", content: "" }]) {
  const key = nextKey++;
  const block = Object.assign(document.createElement("fieldset"), { className: "conversation" });
  const legend = document.createElement("legend");
  const sysLabel = Object.assign(document.createElement("label"), { htmlFor: `conv-system-${key}` });
  const sys = Object.assign(document.createElement("textarea"), { id: `conv-system-${key}`, rows: 1, className: "system-prompt" });
  sys.placeholder = "e.g. You are a pirate. Answer briefly.";
  const turns = Object.assign(document.createElement("div"), { className: "turns" });
  const buttons = Object.assign(document.createElement("div"), { className: "row" });
  const add = Object.assign(document.createElement("button"), { type: "button", className: "secondary add-turn", textContent: "Add turn" });
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "secondary remove-conversation", textContent: "Remove conversation" });
  add.addEventListener("click", () => {
    addTurn(block).querySelector("textarea").focus();
    syncSoon();
  });
  remove.addEventListener("click", () => removeConversation(block));
  buttons.append(add, remove);
  block.append(legend, sysLabel, sys, turns, buttons);
  $("conversation-list").appendChild(block);
  // The editor keeps one system prompt, at the start (imports with others are refused).
  const [first, ...rest] = messages;
  if (first?.role === "system") sys.value = first.content;
  for (const m of first?.role === "system" ? rest : messages) addTurn(block, m.role, m.content);
  labelBlocks();
  return block;
}

/**
 * Numbers the conversations and names every control ("Conversation 2 turn 3 (assistant)",
 * "Remove turn 3 of conversation 2"): renumbered after a removal or a change of role.
 */
function labelBlocks() {
  blocks().forEach((b, i) => {
    const n = i + 1;
    b.querySelector("legend").textContent = `Conversation ${n}`;
    b.querySelector(`label[for="${b.querySelector(".system-prompt").id}"]`).textContent = `Conversation ${n} system prompt (optional)`;
    b.querySelector(".add-turn").setAttribute("aria-label", `Add turn to conversation ${n}`);
    b.querySelector(".remove-conversation").setAttribute("aria-label", `Remove conversation ${n}`);
    turnsOf(b).forEach((t, j) => {
      const m = j + 1;
      const role = t.querySelector("select").value;
      const [roleLabel, textLabel] = t.querySelectorAll("label");
      roleLabel.textContent = `Conversation ${n} turn ${m} role`;
      textLabel.textContent = `Conversation ${n} turn ${m} (${role})`;
      t.querySelector("textarea").placeholder = role === "user" ? "What the user says" : "How the assistant should answer";
      t.querySelector(".remove-turn").setAttribute("aria-label", `Remove turn ${m} of conversation ${n}`);
    });
  });
}

function removeTurn(turn) {
  const block = turn.closest(".conversation");
  const turns = turnsOf(block);
  const i = turns.indexOf(turn);
  turn.remove();
  labelBlocks();
  // Focus stays in the conversation: the turn that took its place, else the previous one, else "Add turn".
  const rest = turnsOf(block);
  (rest[i] ?? rest[i - 1])?.querySelector("textarea").focus() ?? block.querySelector(".add-turn").focus();
  syncSoon(0);
}

function removeConversation(block) {
  const i = blocks().indexOf(block);
  block.remove();
  labelBlocks();
  const rest = blocks();
  (rest[i] ?? rest[i - 1])?.querySelector(".system-prompt").focus() ?? $("add-conversation").focus();
  syncSoon(0);
}

// The editor becomes the data after a pause in typing (`syncing.soon(ms)`, at once with 0).
const syncing = debounced(() => sync());
const syncSoon = (ms) => syncing.soon(ms);

/** Drops a pending edit's sync (other data was chosen meanwhile; editing again makes the editor the data). */
export const cancelConversationsSync = () => syncing.cancel();

/** Applies a pending edit now (Start calls this, so the run trains on what is typed). */
export const flushConversations = () => syncing.flush();

async function sync() {
  const { text, conversations } = editorFile();
  lineConversation = conversations;
  if (!conversations.length) {
    setText("conversations-msg", "");
    if (state.data?.editor === "chat") clearData();
    else showConversationsStatus();
    return;
  }
  if (state.data?.editor === "chat" && state.data.text === text) return showConversationsStatus();
  await useData(CONVERSATIONS_NAME, text, { editor: "chat" });
}

/**
 * The core's problems with the editor's data, said per conversation ("Conversation 2: no
 * assistant message, so nothing to learn from"), after each check (with a model's chat
 * template too). Other data: nothing here (the data section lists its problems).
 */
function showConversationProblems() {
  const d = state.data;
  if (d?.editor !== "chat" || !d.check) return setText("conversations-msg", "");
  const rows = d.check.problems.filter((p) => p.line !== null);
  const shown = rows.slice(0, 5).map((p) => `Conversation ${lineConversation[p.line - 1] ?? `on line ${p.line}`}: ${problemText(p)}`);
  const more = rows.length > shown.length ? ` (and ${rows.length - shown.length} more)` : "";
  setText("conversations-msg", shown.join("\n") + more);
}

/** The editor's status line: how many conversations, and whether training uses them or a file. */
export function showConversationsStatus() {
  const convs = blocks().map(messagesOf).filter((m) => m.length);
  const n = convs.length;
  const turns = convs.reduce((a, m) => a + m.filter((x) => x.role !== "system").length, 0);
  const d = state.data;
  const counts = `${fmtInt(n)} conversation${n === 1 ? "" : "s"}, ${fmtInt(turns)} turn${turns === 1 ? "" : "s"}`;
  let text;
  if (!n) text = d ? `Training uses ${d.name}; write conversations here to use them instead.` : "No conversations yet: write what a user says and how the assistant should answer.";
  else if (d?.editor === "chat") text = `${counts}: training uses these (as ${CONVERSATIONS_NAME}).`;
  else text = `${counts}; training uses ${d ? d.name : "nothing yet"}. Edit a turn here to use these instead.`;
  setText("conversations-status", text);
}

function exportConversations() {
  clearError("conversations");
  const { text, conversations } = editorFile();
  if (!conversations.length) return setText("conversations-msg", "Nothing to export yet: write a conversation first.");
  saveAs(new Blob([text], { type: "application/jsonl" }), CONVERSATIONS_NAME);
  setText("conversations-status", `Saved ${CONVERSATIONS_NAME}: ${fmtInt(conversations.length)} conversation${conversations.length === 1 ? "" : "s"}.`);
}

/**
 * Reads JSON lines of {"messages": [...]} (a file, or the bundled pirate sample) into the
 * editor, replacing what is there. The core checks the text first, so a file the page would
 * refuse to train on is refused here with its lines named; only then are its lines read.
 */
export async function importConversations(name, text) {
  clearError("conversations");
  text = text.replace(/^\uFEFF/, "");
  let v;
  try {
    v = await validate(name, text);
  } catch (e) {
    showError("conversations", e);
    return false;
  }
  const refuse = (why) => (setText("conversations-msg", `Not imported: ${why}`), false);
  if (v.problems.some((p) => p.line !== null) || !v.format) return refuse(problemsLine(name, v.problems));
  if (v.format !== "jsonl-messages") return refuse(`${name} holds no conversations; the editor reads JSON lines like {"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}.`);
  // The core's parser gives the conversations as it read them (validateData's `conversations`):
  // the page has no parser of its own.
  const convs = v.conversations ?? [];
  const late = convs.findIndex((m) => m.some((x, i) => x.role === "system" && i > 0));
  if (late >= 0) return refuse(`${name}, conversation ${late + 1}: a system message after the first turn; the editor keeps one system prompt, at the start of a conversation.`);
  $("conversation-list").replaceChildren();
  for (const messages of convs) addConversation(messages.map((m) => ({ role: m.role, content: m.content })));
  cancelConversationsSync();
  await sync();
  setText("conversations-status", `Imported ${fmtInt(convs.length)} conversation${convs.length === 1 ? "" : "s"} from ${name}; training uses them (as ${CONVERSATIONS_NAME}).`);
  return true;
}

/** The editor as a fresh page has it: one empty conversation (a new project starts here too). */
export function resetConversations() {
  cancelConversationsSync();
  $("conversation-list").replaceChildren();
  addConversation();
  lineConversation = [];
  setText("conversations-msg", "");
  showConversationsStatus();
}

export function wireConversations() {
  resetConversations();
  $("conversation-list").addEventListener("input", () => syncSoon());
  $("add-conversation").addEventListener("click", () => {
    addConversation().querySelector(".system-prompt").focus();
    syncSoon();
  });
  $("export-conversations").addEventListener("click", exportConversations);
  $("conversations-import").addEventListener("change", async () => {
    const f = $("conversations-import").files[0];
    if (f) await importConversations(f.name, await f.text());
    $("conversations-import").value = ""; // the same file again is a new import
  });
  document.addEventListener("webpeft:data-checked", showConversationProblems);
}
