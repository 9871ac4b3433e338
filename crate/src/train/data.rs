//! Training data: dataset files (JSONL, CSV, plain text) parsed into records,
//! tokenised into examples with Hugging Face style label masks, batched and
//! split. Shared by the CLI and the browser, so it sees only a file name and
//! its bytes (no file system, no threads).
//!
//! Conventions follow transformers/TRL: `labels` are aligned with `input_ids`
//! (the loss shifts them), and positions that must not be learned carry
//! [`IGNORE_INDEX`] (-100).

use std::ops::Range;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::formats::tokenizer::{Message, TextTokenizer};

/// The label of positions the loss ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i32 = -100;

/// Chat roles a `messages` row may use.
const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// One parsed row.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Plain text (causal LM on every token). For `txt` files: the whole file.
    Text(String),
    /// A prompt and the completion to learn (loss on the completion only).
    PromptCompletion { prompt: String, completion: String },
    /// A conversation (loss on the assistant turns only).
    Messages(Vec<Message>),
    /// Text with a class label (sequence classification).
    Labelled { text: String, label: String },
}

/// A parsed dataset file.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The detected format, for previews and messages: "jsonl-text",
    /// "jsonl-prompt-completion", "jsonl-messages", "jsonl-text-label",
    /// "csv-text-label" or "txt".
    pub format: String,
    pub records: Vec<Record>,
    /// The file name, used as the source of every error about this data.
    pub source: String,
    /// The 1-based line each record starts on (parallel to `records`), so that
    /// errors found while encoding can point at the row.
    pub lines: Vec<usize>,
}

impl Dataset {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// An error about the row that starts on `line`.
    fn error_at(&self, line: usize, message: impl std::fmt::Display) -> Error {
        Error::input(&self.source, format!("line {line}: {message}"))
    }
}

/// Parses a dataset file, choosing the format by extension: `.jsonl`/`.json`
/// (one JSON object per line), `.csv` (with a `text,label` header) or `.txt`.
/// Other extensions are sniffed: a first non-blank `{` means JSONL, else text.
/// The first problem found is the error.
pub fn parse(file_name: &str, bytes: &[u8]) -> Result<Dataset> {
    let (ds, mut problems) = scan(file_name, bytes, 1);
    match (ds, problems.is_empty()) {
        (Some(ds), true) => Ok(ds),
        _ => Err(problems.swap_remove(0)),
    }
}

/// Parses as [`parse`] does, but goes on after a bad row: the dataset of the
/// rows that parsed (None when the file as a whole is unreadable: not UTF-8, a
/// JSON array, a CSV quote never closed, ...) and up to `max_problems` errors,
/// each naming the file and line as [`parse`]'s would.
pub fn scan(file_name: &str, bytes: &[u8], max_problems: usize) -> (Option<Dataset>, Vec<Error>) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            let msg = format!("line {line}: not valid UTF-8 text (at byte {})", e.valid_up_to());
            return (None, vec![Error::input(file_name, msg)]);
        }
    };
    // Editors on Windows (and Excel's CSV export) start files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ext = file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let mut problems = Rows { source: file_name, max: max_problems.max(1), errors: vec![] };
    let ds = match ext.as_str() {
        "jsonl" | "json" | "ndjson" => parse_jsonl(text, &mut problems),
        "csv" => parse_csv(text, &mut problems),
        "txt" | "text" => Ok(parse_txt(file_name, text)),
        _ if text.trim_start().starts_with('{') => parse_jsonl(text, &mut problems),
        _ => Ok(parse_txt(file_name, text)),
    };
    let mut errors = problems.errors;
    match ds {
        Err(e) => {
            errors.insert(0, e);
            (None, errors)
        }
        Ok(ds) => {
            if ds.records.is_empty() && errors.is_empty() {
                errors.push(Error::input(file_name, "contains no examples"));
            }
            (Some(ds), errors)
        }
    }
}

/// The row errors of a file being parsed, up to `max`.
struct Rows<'a> {
    source: &'a str,
    max: usize,
    errors: Vec<Error>,
}

impl Rows<'_> {
    /// Records an error about `line`; false once there are `max` of them (stop).
    fn add(&mut self, line: usize, msg: impl std::fmt::Display) -> bool {
        self.errors.push(Error::input(self.source, format!("line {line}: {msg}")));
        self.errors.len() < self.max
    }
}

/// The shape of a JSONL row, fixed by the first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Text,
    TextLabel,
    PromptCompletion,
    Messages,
}

impl Shape {
    fn format(self) -> &'static str {
        match self {
            Shape::Text => "jsonl-text",
            Shape::TextLabel => "jsonl-text-label",
            Shape::PromptCompletion => "jsonl-prompt-completion",
            Shape::Messages => "jsonl-messages",
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Shape::Text => &["text"],
            Shape::TextLabel => &["text", "label"],
            Shape::PromptCompletion => &["prompt", "completion"],
            Shape::Messages => &["messages"],
        }
    }

    /// The shape a row's keys ask for.
    fn of(row: &Map<String, Value>) -> std::result::Result<Shape, String> {
        let has = |k: &str| row.contains_key(k);
        if has("messages") {
            Ok(Shape::Messages)
        } else if has("prompt") || has("completion") {
            Ok(Shape::PromptCompletion)
        } else if has("text") {
            Ok(if has("label") { Shape::TextLabel } else { Shape::Text })
        } else {
            let found: Vec<String> = row.keys().map(|k| format!("'{k}'")).collect();
            let found = if found.is_empty() { "an empty object".to_string() } else { found.join(", ") };
            Err(format!("expected a 'text', 'prompt'/'completion' or 'messages' field, found {found}"))
        }
    }
}

/// JSON lines: one object per non-blank line, all of the first row's shape.
/// A bad row is recorded in `rows` and skipped.
fn parse_jsonl(text: &str, rows: &mut Rows) -> Result<Dataset> {
    let source = rows.source;
    if text.trim_start().starts_with('[') {
        return Err(Error::input(
            source,
            "is a JSON array; training data must be JSON lines (one object per line, no enclosing [ ])",
        ));
    }
    let mut shape: Option<(Shape, usize)> = None;
    let (mut records, mut lines) = (Vec::new(), Vec::new());
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        match jsonl_row(raw, line, &mut shape) {
            Ok(rec) => {
                records.push(rec);
                lines.push(line);
            }
            Err(msg) => {
                if !rows.add(line, msg) {
                    break;
                }
            }
        }
    }
    let format = shape.map_or("jsonl-text", |s| s.0.format()).to_string();
    Ok(Dataset { format, records, source: source.into(), lines })
}

/// One JSONL row as a record; the first row that names its fields fixes `shape`.
fn jsonl_row(raw: &str, line: usize, shape: &mut Option<(Shape, usize)>) -> std::result::Result<Record, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| json_error(&e))?;
    let Value::Object(row) = value else {
        return Err(format!("expected a JSON object, found {}", kind(&value)));
    };
    let row_shape = Shape::of(&row)?;
    let shape = *shape.get_or_insert((row_shape, line));
    if row_shape != shape.0 {
        // A row with part of the first row's fields (text without its
        // label) reads better as a missing field than as another shape.
        let expected = shape.0.fields();
        let missing = expected.iter().find(|f| !row.contains_key(**f));
        if let (Some(f), true) = (missing, row_shape.fields().iter().all(|f| expected.contains(f))) {
            return Err(format!("missing field '{f}'"));
        }
        return Err(format!(
            "this row is {} but line {} made the file {}; every row must have the same fields",
            row_shape.format(),
            shape.1,
            shape.0.format()
        ));
    }
    record(shape.0, &row)
}

/// serde_json's message without its position: each line is parsed on its
/// own, so "at line 1" would mislead; the column still helps.
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let pos = format!(" at line {} column {}", e.line(), e.column());
    match msg.strip_suffix(&pos) {
        Some(m) => format!("invalid JSON (column {}): {m}", e.column()),
        None => format!("invalid JSON: {msg}"),
    }
}

/// A JSON value's type, in words.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string_field(row: &Map<String, Value>, name: &str) -> std::result::Result<String, String> {
    match row.get(name) {
        None => Err(format!("missing field '{name}'")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!("'{name}' must be a string, found {}", kind(v))),
    }
}

/// A string field that must have content (an empty one would teach nothing).
fn text_field(row: &Map<String, Value>, name: &str) -> std::result::Result<String, String> {
    let s = string_field(row, name)?;
    if s.trim().is_empty() {
        return Err(format!("'{name}' is empty"));
    }
    Ok(s)
}

/// A class label: a string or a number (stringified). Surrounding spaces are
/// dropped so that "pos" and " pos" are one class.
fn label_field(row: &Map<String, Value>) -> std::result::Result<String, String> {
    let label = match row.get("label") {
        None => return Err("missing field 'label'".into()),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => return Err(format!("'label' must be a string or number, found {}", kind(v))),
    };
    if label.is_empty() {
        return Err("'label' is empty".into());
    }
    Ok(label)
}

fn record(shape: Shape, row: &Map<String, Value>) -> std::result::Result<Record, String> {
    Ok(match shape {
        Shape::Text => Record::Text(text_field(row, "text")?),
        Shape::TextLabel => Record::Labelled { text: text_field(row, "text")?, label: label_field(row)? },
        // An empty prompt is allowed (plain text with a marked continuation); an
        // empty completion leaves nothing to learn.
        Shape::PromptCompletion => Record::PromptCompletion {
            prompt: string_field(row, "prompt")?,
            completion: text_field(row, "completion")?,
        },
        Shape::Messages => Record::Messages(messages(row)?),
    })
}

fn messages(row: &Map<String, Value>) -> std::result::Result<Vec<Message>, String> {
    let Some(Value::Array(list)) = row.get("messages") else {
        let found = row.get("messages").map_or("nothing", kind);
        return Err(format!("'messages' must be a list of {{\"role\", \"content\"}} objects, found {found}"));
    };
    if list.is_empty() {
        return Err("'messages' is empty".into());
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = |msg: String| format!("message {}: {msg}", i + 1);
        let Value::Object(m) = m else {
            return Err(at(format!("expected a {{\"role\", \"content\"}} object, found {}", kind(m))));
        };
        let role = string_field(m, "role").map_err(at)?;
        if !ROLES.contains(&role.as_str()) {
            return Err(at(format!("unknown role '{role}' (expected system, user or assistant)")));
        }
        let content = string_field(m, "content").map_err(at)?;
        out.push(Message { role, content });
    }
    if !out.iter().any(|m| m.role == "assistant") {
        return Err("no assistant message, so nothing to learn from".into());
    }
    Ok(out)
}

/// CSV (RFC 4180) with a header naming a `text` and a `label` column, in any
/// order and case; other columns are ignored. A bad row is recorded in `rows`
/// and skipped.
fn parse_csv(text: &str, rows: &mut Rows) -> Result<Dataset> {
    let source = rows.source;
    let mut records = csv_records(source, text)?.into_iter();
    let mut ds = Dataset { format: "csv-text-label".into(), records: vec![], source: source.into(), lines: vec![] };
    let Some((header_line, header)) = records.next() else {
        return Ok(ds);
    };
    let column = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(text_col), Some(label_col)) = (column("text"), column("label")) else {
        let found: Vec<String> = header.iter().map(|h| format!("'{h}'")).collect();
        return Err(Error::input(
            source,
            format!(
                "line {header_line}: the header row must name a 'text' and a 'label' column (found {})",
                found.join(", ")
            ),
        ));
    };
    for (line, fields) in records {
        let problem = if fields.len() != header.len() {
            Some(format!("expected {} fields as in the header, found {}", header.len(), fields.len()))
        } else if fields[text_col].trim().is_empty() {
            Some("'text' is empty".to_string())
        } else if fields[label_col].trim().is_empty() {
            Some("'label' is empty".to_string())
        } else {
            None
        };
        if let Some(msg) = problem {
            if !rows.add(line, msg) {
                break;
            }
            continue;
        }
        ds.records
            .push(Record::Labelled { text: fields[text_col].clone(), label: fields[label_col].trim().to_string() });
        ds.lines.push(line);
    }
    Ok(ds)
}

/// Splits CSV text into records of fields, each with the 1-based line it
/// starts on. Quoted fields may hold commas, newlines and `""` (a quote).
/// Blank lines are skipped; `\r\n` and `\n` both end a record.
fn csv_records(source: &str, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let mut line = 1;
    let mut start = 1; // line the current record starts on
    let mut quote_line = 1; // line the open quoted field starts on
    let mut in_quotes = false;
    let mut after_quote = false; // just closed a quoted field
    let mut quoted = false; // the current record has a quoted field (so it is not blank)
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    after_quote = true;
                }
                _ => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                after_quote = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                let record = std::mem::take(&mut fields);
                let blank = record.len() == 1 && record[0].is_empty() && !quoted;
                if !blank {
                    out.push((start, record));
                }
                (after_quote, quoted) = (false, false);
                line += 1;
                start = line;
            }
            '"' if field.is_empty() && !after_quote => {
                in_quotes = true;
                quoted = true;
                quote_line = line;
            }
            // Spaces between a closing quote and the comma are harmless.
            ' ' | '\t' if after_quote => {}
            _ if after_quote => {
                return Err(Error::input(
                    source,
                    format!("line {line}: unexpected text after a closing quote (write a quote inside a quoted field as \"\")"),
                ));
            }
            // A quote inside an unquoted field is kept literally, as most readers do.
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(Error::input(source, format!("line {quote_line}: a quoted field is never closed")));
    }
    fields.push(field);
    if !(fields.len() == 1 && fields[0].is_empty() && !quoted) {
        out.push((start, fields));
    }
    Ok(out)
}

/// Plain text: the whole file is one record, cut into blocks when encoded.
fn parse_txt(source: &str, text: &str) -> Dataset {
    let (records, lines) =
        if text.trim().is_empty() { (vec![], vec![]) } else { (vec![Record::Text(text.to_string())], vec![1]) };
    Dataset { format: "txt".into(), records, source: source.into(), lines }
}

/// What the examples are encoded for. Written `causal-lm` or `seq-cls`
/// (CLI flags, JS options, `webpeft.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli-cpu", derive(clap::ValueEnum))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Task {
    /// Next-token prediction.
    CausalLm,
    /// One class per sequence.
    SeqCls,
}

impl Task {
    /// Parses the CLI / JS name, `causal-lm` or `seq-cls`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "causal-lm" => Ok(Self::CausalLm),
            "seq-cls" => Ok(Self::SeqCls),
            other => Err(Error::input("task", format!("unknown task '{other}' (use causal-lm or seq-cls)"))),
        }
    }

    /// The CLI / JS name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CausalLm => "causal-lm",
            Self::SeqCls => "seq-cls",
        }
    }
}

/// How to encode a dataset.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub task: Task,
    /// The longest example in tokens; also the block size for `txt` files.
    pub seq_len: usize,
}

/// A tokenised example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub ids: Vec<u32>,
    /// Causal LM: per input position, the token to predict at that position in
    /// HF convention (aligned with `ids`; the loss shifts), or [`IGNORE_INDEX`].
    /// Empty for classification.
    pub labels: Vec<i32>,
    /// Classification: the label's index.
    pub class: Option<u32>,
}

/// Class label names and their indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// `names[i]` is the label of class `i`.
    pub names: Vec<String>,
}

impl LabelMap {
    /// A map with class `i` named `names[i]`.
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { names: names.into_iter().map(Into::into).collect() }
    }

    /// The map in a model `config.json`'s `id2label` (keys are stringified
    /// indices), or None when there is none or its keys are not exactly 0..n.
    pub fn from_config(config: &Value) -> Option<Self> {
        let id2label = config.get("id2label")?.as_object()?;
        let mut names = vec![None; id2label.len()];
        for (k, v) in id2label {
            let i: usize = k.trim().parse().ok()?;
            let slot = names.get_mut(i)?;
            *slot = Some(v.as_str()?.to_string());
        }
        let names: Option<Vec<String>> = names.into_iter().collect();
        names.filter(|n| !n.is_empty()).map(|names| Self { names })
    }

    /// The index of a label name.
    pub fn index(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether the names are transformers' placeholders (`LABEL_0`, `LABEL_1`,
    /// ...), which a config gets when it was saved without real labels.
    pub fn is_placeholder(&self) -> bool {
        self.names.iter().enumerate().all(|(i, n)| *n == format!("LABEL_{i}"))
    }
}

/// The label map of a classification dataset: its unique labels, sorted
/// (numerically when they all look like integers, so "2" < "10").
pub fn label_map(ds: &Dataset) -> Result<LabelMap> {
    let mut names: Vec<&str> = ds.records.iter().filter_map(label_of).collect();
    if names.is_empty() {
        return Err(Error::input(
            &ds.source,
            format!("has no labels ({}); classification needs a 'text' and a 'label' per row", ds.format),
        ));
    }
    names.sort_unstable();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or_default());
    }
    if names.len() < 2 {
        return Err(Error::input(
            &ds.source,
            format!("every row has the label '{}'; classification needs at least two labels", names[0]),
        ));
    }
    Ok(LabelMap::from_names(names))
}

/// Encoded examples and what the user should know about them.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub examples: Vec<Example>,
    /// Summaries (truncation, skipped rows), at most one line per kind.
    pub warnings: Vec<String>,
    /// Tokens of all rows before truncation (skipped rows included).
    pub tokens: usize,
    /// The longest row in tokens, before truncation (`txt`: the longest block).
    pub longest: usize,
}

/// Whether the rows fit `task`: class labels for `seq-cls`, none for `causal-lm`.
pub fn check_task(ds: &Dataset, task: Task) -> Result<()> {
    let labelled = matches!(ds.records.first(), Some(Record::Labelled { .. }));
    match task {
        Task::CausalLm if labelled => Err(Error::input(
            &ds.source,
            format!(
                "has class labels ({}); causal-lm training needs text, prompt/completion or messages rows",
                ds.format
            ),
        )),
        Task::SeqCls if !labelled => Err(Error::input(
            &ds.source,
            format!("has no labels ({}); classification needs a 'text' and a 'label' per row", ds.format),
        )),
        _ => Ok(()),
    }
}

/// Tokenises a dataset for `opts.task`. Classification needs `labels`; a row
/// whose label is not in it is an error naming the row.
pub fn encode(ds: &Dataset, tok: &TextTokenizer, opts: &EncodeOptions, labels: Option<&LabelMap>) -> Result<Encoded> {
    let seq_len = opts.seq_len;
    if seq_len < 2 {
        return Err(Error::input("--seq-len", format!("must be at least 2 tokens, not {seq_len}")));
    }
    check_task(ds, opts.task)?;
    let labels = match opts.task {
        Task::CausalLm => None,
        Task::SeqCls => Some(labels.ok_or_else(|| Error::input(&ds.source, "classification needs a label map"))?),
    };
    if ds.format == "txt" {
        return encode_blocks(ds, tok, seq_len);
    }
    if matches!(ds.records.first(), Some(Record::Messages(_))) && tok.chat_template.is_none() {
        return Err(Error::input(
            &ds.source,
            format!(
                "has chat messages but the tokenizer ({}) has no chat template; use prompt/completion rows instead",
                tok.source
            ),
        ));
    }

    // Templates and tokenizers add eos themselves in some models; never twice.
    let eos = tok.eos_token.as_deref().and_then(|t| tok.token_id(t));
    let with_eos = |ids: &mut Vec<u32>| {
        if let Some(eos) = eos {
            if ids.last() != Some(&eos) {
                ids.push(eos);
            }
        }
    };
    let sep = tok.token_id("[SEP]");
    let (mut examples, mut truncated, mut skipped, mut tokens, mut longest) = (Vec::new(), 0, 0, 0, 0);
    for (i, rec) in ds.records.iter().enumerate() {
        // Datasets built by hand may have no line numbers: count rows instead.
        let line = ds.lines.get(i).copied().unwrap_or(i + 1);
        // Tokenizer and template errors come without the row; add it, and
        // keep what they were about in the message.
        let at = |e: Error| Error {
            message: format!("line {line}: {}: {}", e.source, e.message),
            source: ds.source.clone(),
            ..e
        };
        let mut ex = match rec {
            Record::Text(text) => {
                let mut ids = tok.encode(text, true).map_err(at)?;
                with_eos(&mut ids);
                Example { labels: to_labels(&ids), ids, class: None }
            }
            Record::PromptCompletion { prompt, completion } => {
                let mut ids = tok.encode(prompt, true).map_err(at)?;
                let n_prompt = ids.len();
                ids.extend(tok.encode(completion, false).map_err(at)?);
                with_eos(&mut ids);
                let mut labels = to_labels(&ids);
                labels[..n_prompt].fill(IGNORE_INDEX);
                Example { ids, labels, class: None }
            }
            Record::Messages(msgs) => {
                let (ids, labels) = encode_chat(tok, msgs).map_err(at)?;
                Example { ids, labels, class: None }
            }
            Record::Labelled { text, label } => {
                let map = labels.expect("checked above: classification has a label map");
                let class = map.index(label).ok_or_else(|| {
                    ds.error_at(line, format!("label '{label}' was not seen in training (known: {})", known(map)))
                })?;
                let ids = tok.encode(text, true).map_err(at)?;
                Example { ids, labels: vec![], class: Some(class) }
            }
        };
        tokens += ex.ids.len();
        longest = longest.max(ex.ids.len());
        if ex.ids.len() > seq_len {
            truncated += 1;
            ex.ids.truncate(seq_len);
            ex.labels.truncate(seq_len);
            // BERT-style classifiers expect the sequence to end with [SEP].
            if let (Some(sep), Some(_)) = (sep, ex.class) {
                ex.ids[seq_len - 1] = sep;
            }
        }
        // The label at position 0 is never predicted (nothing comes before it).
        if opts.task == Task::CausalLm && !ex.labels.iter().skip(1).any(|&l| l != IGNORE_INDEX) {
            skipped += 1;
            continue;
        }
        examples.push(ex);
    }

    let n = ds.records.len();
    let mut warnings = Vec::new();
    if truncated > 0 {
        warnings.push(format!(
            "{truncated} of {n} examples were longer than --seq-len {seq_len} tokens and were truncated"
        ));
    }
    if skipped > 0 {
        warnings.push(format!(
            "{skipped} of {n} examples were skipped: nothing to learn from within --seq-len {seq_len} tokens"
        ));
    }
    if examples.is_empty() {
        return Err(Error::input(
            &ds.source,
            format!("no example has anything to learn from within --seq-len {seq_len} tokens; raise --seq-len"),
        ));
    }
    Ok(Encoded { examples, warnings, tokens, longest })
}

fn to_labels(ids: &[u32]) -> Vec<i32> {
    ids.iter().map(|&i| i as i32).collect()
}

/// The known labels for an error message, shortened when there are many.
fn known(map: &LabelMap) -> String {
    const SHOWN: usize = 10;
    let mut s = map.names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if map.names.len() > SHOWN {
        s += &format!(", and {} more", map.names.len() - SHOWN);
    }
    s
}

/// A `txt` file as consecutive blocks of `seq_len` tokens (run_clm's
/// grouping); a last partial block is kept when it has something to learn.
fn encode_blocks(ds: &Dataset, tok: &TextTokenizer, seq_len: usize) -> Result<Encoded> {
    let mut ids = Vec::new();
    for rec in &ds.records {
        if let Record::Text(text) = rec {
            ids.extend(tok.encode(text, false).map_err(|e| Error { source: ds.source.clone(), ..e })?);
        }
    }
    let examples: Vec<Example> = ids
        .chunks(seq_len)
        .filter(|block| block.len() >= 2)
        .map(|block| Example { ids: block.to_vec(), labels: to_labels(block), class: None })
        .collect();
    if examples.is_empty() {
        return Err(Error::input(&ds.source, "is too short to train on (fewer than 2 tokens)"));
    }
    let longest = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    Ok(Encoded { examples, warnings: vec![], tokens: ids.len(), longest })
}

/// A conversation rendered with the chat template, with labels on the
/// assistant turns only (TRL's `assistant_only_loss`). Each assistant turn is
/// located by rendering the conversation up to it: the text after
/// `render(before, add_generation_prompt)` and up to `render(through)` is the
/// turn, including the template's end-of-turn token.
fn encode_chat(tok: &TextTokenizer, msgs: &[Message]) -> Result<(Vec<u32>, Vec<i32>)> {
    let full = tok.apply_chat_template(msgs, false)?;
    let mut spans: Vec<Range<usize>> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = match tok.apply_chat_template(&msgs[..i], true) {
            Ok(s) => s,
            // Some templates read messages[0] and cannot render no messages.
            Err(_) if i == 0 => String::new(),
            Err(e) => return Err(e),
        };
        let through = tok.apply_chat_template(&msgs[..=i], false)?;
        let unlocatable = || {
            Error::format(
                "chat template",
                "it does not render a conversation as a prefix of its continuation, so assistant turns cannot be located",
            )
        };
        if !full.starts_with(&through) {
            return Err(unlocatable());
        }
        let start = if through.starts_with(&before) {
            before.len()
        } else {
            // Templates that add a default system prompt only once there are
            // messages (SmolLM2) break the prefix for a leading assistant turn;
            // then the turn starts at its content.
            match through.rfind(m.content.as_str()) {
                Some(at) if i == 0 && !m.content.is_empty() => at,
                _ => return Err(unlocatable()),
            }
        };
        // The separator after the end-of-turn token (usually "\n") belongs to
        // the template's layout; generation stops before it.
        let end = start + through[start..].trim_end().len();
        if !through[start..end].contains(m.content.trim()) {
            return Err(unlocatable());
        }
        spans.push(start..end);
    }
    // Templates write their own special tokens (bos, turn markers).
    let enc = tok
        .inner
        .encode(full.as_str(), false)
        .map_err(|e| Error::input(&tok.source, format!("could not tokenize the text: {e}")))?;
    let ids = enc.get_ids().to_vec();
    let labels = ids
        .iter()
        .zip(enc.get_offsets())
        .map(|(&id, &(s, e))| {
            let inside = spans.iter().any(|span| span.start <= s && e <= span.end);
            if inside {
                id as i32
            } else {
                IGNORE_INDEX
            }
        })
        .collect();
    Ok((ids, labels))
}

/// Most problems [`validate`] lists; after them it stops reading.
pub const MAX_PROBLEMS: usize = 100;

/// What `validateData` (the core's `validate`) checks a dataset for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "ValidateSpec", rename_all = "camelCase", optional_fields))]
pub struct ValidateOptions {
    /// The task to train (default: `seq-cls` for rows with labels, else `causal-lm`).
    pub task: Option<Task>,
    /// The training sequence length: truncation is counted against it (default 128, training's default).
    pub seq_len: Option<usize>,
    /// Also return classification rows (`examples`) or chat conversations (`conversations`) as
    /// parsed, for a caller that splits or shows them without a parser of its own (default false).
    pub examples: Option<bool>,
}

/// A problem in a dataset, as training would report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "DataProblem", rename_all = "camelCase"))]
pub struct Problem {
    /// `input` (a row) or `format` (the chat template cannot render it).
    #[cfg_attr(test, ts(type = "\"input\" | \"format\""))]
    pub kind: &'static str,
    /// The file (or tokenizer, or chat template) it is about.
    pub source: String,
    /// The 1-based line of the row in the file; null when it is about the whole file.
    pub line: Option<usize>,
    /// The whole message, `file: line N: what`, as training's error would read.
    pub message: String,
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let kind = if e.kind == crate::error::ErrorKind::Format { "format" } else { "input" };
        let message = e.to_string();
        let line = e.message.strip_prefix("line ").and_then(|r| r.split(':').next()).and_then(|n| n.parse().ok());
        Problem { kind, source: e.source, line, message }
    }
}

/// A class label and the rows that have it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename_all = "camelCase"))]
pub struct LabelCount {
    pub label: String,
    pub count: usize,
}

/// A classification row as the parser read it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LabelledExample {
    pub text: String,
    /// Trimmed, as training reads it.
    pub label: String,
}

/// Token counts of a dataset, before truncation (with a model's tokenizer only).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename_all = "camelCase"))]
pub struct TokenCounts {
    /// All rows' tokens, before truncation.
    pub total: usize,
    /// The longest row.
    pub longest: usize,
    /// The sequence length checked against.
    pub seq_len: usize,
    /// Examples training would make of the rows (`txt`: blocks of the sequence length).
    pub examples: usize,
}

/// What `validateData` found: the counts training would see, and every problem
/// (the first 100) with its line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "DataValidation", rename_all = "camelCase"))]
pub struct Validation {
    /// The file name (for a string, Blob or array: `data.jsonl`, `data.csv` or `data.txt`).
    pub source: String,
    /// The detected format; null when the file could not be read at all (not UTF-8, a JSON array, ...).
    #[cfg_attr(
        test,
        ts(type = "\"jsonl-text\" | \"jsonl-prompt-completion\" | \"jsonl-messages\" | \"jsonl-text-label\" | \"csv-text-label\" | \"txt\" | null")
    )]
    pub format: Option<String>,
    /// The task checked for (null when no row parsed).
    pub task: Option<Task>,
    /// Rows that parsed (a `txt` file is one row: the whole text).
    pub rows: usize,
    /// Classification data: each label (in the order of the classes training would make) and its rows; else null.
    pub labels: Option<Vec<LabelCount>>,
    /// With the `examples` option, classification data's rows that parsed, in file order; else null.
    pub examples: Option<Vec<LabelledExample>>,
    /// With the `examples` option, chat data's conversations (`messages` rows) that parsed, in
    /// file order; else null.
    #[cfg_attr(test, ts(type = "{ role: string, content: string }[][] | null"))]
    pub conversations: Option<Vec<Vec<crate::formats::tokenizer::Message>>>,
    /// With a model's tokenizer, when the rows that parsed encode: token counts; else null.
    pub tokens: Option<TokenCounts>,
    /// Training's notes on the data: rows truncated at the sequence length, or skipped.
    pub warnings: Vec<String>,
    /// Every problem (the first 100), in file order, then any about the data as a whole.
    pub problems: Vec<Problem>,
    /// No problems: training would accept this data.
    pub ok: bool,
}

/// Checks a dataset file without a model: parses it as training does, going on
/// after bad rows, and counts rows and labels. With a tokenizer it also
/// encodes the rows for the task (chat template, truncation at `seq_len`), as
/// training would, and counts tokens.
pub fn validate(file_name: &str, bytes: &[u8], tok: Option<&TextTokenizer>, opts: &ValidateOptions) -> Validation {
    let (ds, errors) = scan(file_name, bytes, MAX_PROBLEMS);
    let mut problems: Vec<Problem> = errors.into_iter().map(Problem::from).collect();
    let mut v = Validation {
        source: file_name.to_string(),
        format: ds.as_ref().map(|d| d.format.clone()),
        task: None,
        rows: ds.as_ref().map_or(0, Dataset::len),
        labels: None,
        examples: None,
        conversations: None,
        tokens: None,
        warnings: vec![],
        problems: vec![],
        ok: false,
    };
    if let Some(ds) = ds.filter(|d| !d.is_empty()) {
        let labelled = matches!(ds.records.first(), Some(Record::Labelled { .. }));
        if opts.examples == Some(true) && matches!(ds.records.first(), Some(Record::Messages(_))) {
            v.conversations = Some(ds.records.iter().filter_map(|r| if let Record::Messages(m) = r { Some(m.clone()) } else { None }).collect());
        }
        let task = opts.task.unwrap_or(if labelled { Task::SeqCls } else { Task::CausalLm });
        v.task = Some(task);
        let map = if labelled { Some(label_map(&ds)) } else { None };
        if let Some(map) = &map {
            let names = match map {
                Ok(m) => m.names.clone(),
                Err(_) => {
                    let mut n: Vec<String> = ds.records.iter().filter_map(label_of).map(String::from).collect();
                    n.sort_unstable();
                    n.dedup();
                    n
                }
            };
            let count = |l: &str| ds.records.iter().filter(|r| label_of(r) == Some(l)).count();
            v.labels = Some(names.into_iter().map(|label| LabelCount { count: count(&label), label }).collect());
            if opts.examples == Some(true) {
                v.examples = Some(
                    ds.records
                        .iter()
                        .filter_map(|r| match r {
                            Record::Labelled { text, label } => Some(LabelledExample { text: text.clone(), label: label.clone() }),
                            _ => None,
                        })
                        .collect(),
                );
            }
        }
        let checked = check_task(&ds, task).and_then(|()| match (task, map) {
            (Task::SeqCls, Some(m)) => m.map(Some),
            _ => Ok(None),
        });
        match (checked, tok) {
            (Err(e), _) => problems.push(e.into()),
            (Ok(map), Some(tok)) => {
                let seq_len = opts.seq_len.unwrap_or(128);
                match encode(&ds, tok, &EncodeOptions { task, seq_len }, map.as_ref()) {
                    Ok(enc) => {
                        v.tokens = Some(TokenCounts {
                            total: enc.tokens,
                            longest: enc.longest,
                            seq_len,
                            examples: enc.examples.len(),
                        });
                        v.warnings = enc.warnings;
                    }
                    Err(e) => problems.push(e.into()),
                }
            }
            (Ok(_), None) => {}
        }
    }
    v.ok = problems.is_empty();
    v.problems = problems;
    v
}

fn label_of(r: &Record) -> Option<&str> {
    match r {
        Record::Labelled { label, .. } => Some(label),
        _ => None,
    }
}

/// A padded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `[batch, longest]` token ids, right-padded.
    pub ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
    /// `[batch, longest]`, [`IGNORE_INDEX`] on padding (and everywhere for
    /// classification examples, which have no token labels).
    pub labels: Vec<Vec<i32>>,
    /// One class per example when they are classification examples, else empty.
    pub classes: Vec<u32>,
    /// Real (unpadded) tokens in the batch.
    pub tokens: usize,
}

/// Right-pads `examples` to the longest with `pad_id`.
pub fn collate(examples: &[&Example], pad_id: u32) -> Batch {
    let width = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut batch = Batch { ids: vec![], attention_mask: vec![], labels: vec![], classes: vec![], tokens: 0 };
    for ex in examples {
        let n = ex.ids.len();
        let mut ids = ex.ids.clone();
        ids.resize(width, pad_id);
        let mut mask = vec![1; n];
        mask.resize(width, 0);
        let mut labels = ex.labels.clone();
        labels.resize(width, IGNORE_INDEX);
        batch.ids.push(ids);
        batch.attention_mask.push(mask);
        batch.labels.push(labels);
        batch.classes.extend(ex.class);
        batch.tokens += n;
    }
    batch
}

/// A deterministic train/eval split of `n` examples: the indices shuffled
/// with `seed`, `round(eval_fraction * n)` of them (at least 1 when `n >= 2`
/// and the fraction is positive; never all) for eval. Returns
/// `(train, eval)`, each sorted.
pub fn split(n: usize, eval_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let fraction = if eval_fraction.is_nan() { 0.0 } else { eval_fraction.clamp(0.0, 1.0) };
    let mut n_eval = (fraction * n as f64).round() as usize;
    if fraction > 0.0 && n >= 2 {
        n_eval = n_eval.clamp(1, n - 1);
    } else if n < 2 {
        n_eval = 0; // a single example is for training
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut eval = idx.split_off(n - n_eval);
    idx.sort_unstable();
    eval.sort_unstable();
    (idx, eval)
}

/// The id to pad with: the tokenizer's padding token ("[PAD]", "<pad>",
/// "<|endoftext|>" or its padding config), else its eos, else 0. Padded
/// positions are masked and ignored, so the choice only has to be a valid id.
pub fn pad_id(tok: &TextTokenizer) -> u32 {
    if let Some(p) = tok.inner.get_padding() {
        return p.pad_id;
    }
    ["[PAD]", "<pad>", "<|endoftext|>"]
        .iter()
        .find_map(|t| tok.token_id(t))
        .or_else(|| tok.eos_token.as_deref().and_then(|t| tok.token_id(t)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokenizers::AddedToken;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");

    /// SmolLM2's ChatML template: it adds a default system prompt when the
    /// conversation does not start with one.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}\
        {{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}\
        {{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\
        {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// The test models' byte-level BPE (GPT-2 style, no bos), given ChatML
    /// turn markers, an eos and a chat template the way a real model has them.
    fn bpe() -> TextTokenizer {
        let json = std::fs::read(format!("{FIXTURES}/tiny-llama/tokenizer.json")).unwrap();
        let config = json!({"eos_token": "<|endoftext|>", "chat_template": CHATML}).to_string();
        let mut tok = TextTokenizer::from_hf(&json, Some(config.as_bytes())).unwrap();
        tok.inner.add_special_tokens(&[AddedToken::from("<|im_start|>", true), AddedToken::from("<|im_end|>", true)]);
        tok
    }

    /// A BERT-style WordPiece tokenizer ([CLS] text [SEP]) over `vocab`.
    fn wordpiece(vocab: &[&str]) -> TextTokenizer {
        let specials: Vec<Value> = vocab
            .iter()
            .enumerate()
            .filter(|(_, t)| t.starts_with('[') || t.starts_with('<'))
            .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let ids: Map<String, Value> = vocab.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
        let id = |t: &str| vocab.iter().position(|v| *v == t).unwrap();
        let json = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": specials,
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", id("[SEP]")], "cls": ["[CLS]", id("[CLS]")]},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": ids}
        });
        TextTokenizer::from_hf(json.to_string().as_bytes(), None).unwrap()
    }

    const BERT_VOCAB: &[&str] =
        &["[UNK]", "[CLS]", "[SEP]", "[PAD]", "the", "movie", "film", "was", "very", "good", "bad", "!"];

    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    fn parse_str(name: &str, text: &str) -> Result<Dataset> {
        parse(name, text.as_bytes())
    }

    fn causal(seq_len: usize) -> EncodeOptions {
        EncodeOptions { task: Task::CausalLm, seq_len }
    }

    fn text(s: &str) -> Record {
        Record::Text(s.into())
    }

    fn labelled(text: &str, label: &str) -> Record {
        Record::Labelled { text: text.into(), label: label.into() }
    }

    /// The labelled positions of `ex`, as runs of consecutive token ids.
    fn labelled_runs(ex: &Example) -> Vec<Vec<u32>> {
        let mut runs: Vec<Vec<u32>> = Vec::new();
        let mut prev_labelled = false;
        for (&id, &l) in ex.ids.iter().zip(&ex.labels) {
            if l != IGNORE_INDEX {
                assert_eq!(l, id as i32, "a label must be the input id at its own position (HF convention)");
                if !prev_labelled {
                    runs.push(vec![]);
                }
                runs.last_mut().unwrap().push(id);
            }
            prev_labelled = l != IGNORE_INDEX;
        }
        runs
    }

    /// Text of ids, special tokens included.
    fn decode(tok: &TextTokenizer, ids: &[u32]) -> String {
        tok.inner.decode(ids, false).unwrap()
    }

    // ---- parsing: JSONL ----

    #[test]
    fn jsonl_formats_by_first_row() {
        let ds = parse_str("d.jsonl", "{\"text\": \"one\"}\n\n  \r\n{\"text\": \"two\", \"extra\": 1}\r\n").unwrap();
        assert_eq!(ds.format, "jsonl-text");
        assert_eq!(ds.records, vec![text("one"), text("two")]);
        assert_eq!(ds.lines, vec![1, 4]);
        assert_eq!(ds.source, "d.jsonl");

        let ds = parse_str(
            "d.json",
            "{\"prompt\": \"Q\", \"completion\": \" A\"}\n{\"prompt\": \"\", \"completion\": \"B\"}",
        )
        .unwrap();
        assert_eq!(ds.format, "jsonl-prompt-completion");
        assert_eq!(ds.records[0], Record::PromptCompletion { prompt: "Q".into(), completion: " A".into() });

        let ds = parse_str("d.jsonl", "{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"b\", \"label\": 1}\n{\"text\": \"c\", \"label\": 0.5}\n{\"text\": \"d\", \"label\": \" neg \"}").unwrap();
        assert_eq!(ds.format, "jsonl-text-label");
        assert_eq!(
            ds.records,
            vec![labelled("a", "pos"), labelled("b", "1"), labelled("c", "0.5"), labelled("d", "neg")]
        );

        let ds = parse_str(
            "d.jsonl",
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#,
        )
        .unwrap();
        assert_eq!(ds.format, "jsonl-messages");
        let Record::Messages(m) = &ds.records[0] else { panic!() };
        assert_eq!((m[1].role.as_str(), m[1].content.as_str()), ("assistant", "hello"));
    }

    #[test]
    fn jsonl_errors_name_file_and_line() {
        let e = err(parse_str("data.jsonl", "{\"text\": \"a\"}\n\n{\"text\": }\n"));
        assert!(e.starts_with("data.jsonl: line 3: invalid JSON"), "{e}");
        assert!(!e.contains("line 1 column"), "per-line parse positions would mislead: {e}");

        let pc = "{\"prompt\": \"p\", \"completion\": \"c\"}";
        let e = err(parse_str("data.jsonl", &format!("{pc}\n\n{pc}\n{{\"prompt\": \"x\"}}\n")));
        assert_eq!(e, "data.jsonl: line 4: missing field 'completion'");
        assert_eq!(err(parse_str("d.jsonl", "{\"completion\": \"x\"}")), "d.jsonl: line 1: missing field 'prompt'");
        assert_eq!(
            err(parse_str("d.jsonl", "{\"prompt\": 3, \"completion\": \"x\"}")),
            "d.jsonl: line 1: 'prompt' must be a string, found a number"
        );
        assert_eq!(
            err(parse_str("d.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": [1]}")),
            "d.jsonl: line 2: 'label' must be a string or number, found a list"
        );
        assert_eq!(
            err(parse_str("d.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"\"}")),
            "d.jsonl: line 2: 'label' is empty"
        );
        assert_eq!(err(parse_str("d.jsonl", "{\"text\": \" \\n \"}")), "d.jsonl: line 1: 'text' is empty");
        assert_eq!(
            err(parse_str("d.jsonl", "{\"text\": null}")),
            "d.jsonl: line 1: 'text' must be a string, found null"
        );
        assert_eq!(
            err(parse_str("d.jsonl", "{\"text\": \"a\"}\n\"just a string\"")),
            "d.jsonl: line 2: expected a JSON object, found a string"
        );
        assert_eq!(
            err(parse_str("d.jsonl", "{\"input\": \"a\", \"output\": \"b\"}")),
            "d.jsonl: line 1: expected a 'text', 'prompt'/'completion' or 'messages' field, found 'input', 'output'"
        );
        assert!(err(parse_str("d.json", "[{\"text\": \"a\"}]")).contains("is a JSON array"));
    }

    #[test]
    fn jsonl_rows_must_share_the_first_rows_shape() {
        let e = err(parse_str("d.jsonl", "{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}"));
        assert_eq!(
            e,
            "d.jsonl: line 2: this row is jsonl-prompt-completion but line 1 made the file jsonl-text; every row must have the same fields"
        );
        // A label appearing later changes the task: not silently dropped.
        let e = err(parse_str("d.jsonl", "\n{\"text\": \"a\"}\n{\"text\": \"b\", \"label\": \"x\"}"));
        assert!(
            e.starts_with("d.jsonl: line 3: this row is jsonl-text-label but line 2 made the file jsonl-text"),
            "{e}"
        );
        // A label missing later is a missing field.
        let e = err(parse_str("d.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}"));
        assert_eq!(e, "d.jsonl: line 2: missing field 'label'");
    }

    #[test]
    fn jsonl_message_errors() {
        let row = |m: &str| format!("{{\"messages\": {m}}}");
        let cases = [
            (
                row(r#"[{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]"#),
                "line 1: message 2: unknown role 'bot' (expected system, user or assistant)",
            ),
            (
                row(r#"[{"role": "user", "content": null}, {"role": "assistant", "content": "a"}]"#),
                "line 1: message 1: 'content' must be a string, found null",
            ),
            (row(r#"[{"role": "user"}]"#), "line 1: message 1: missing field 'content'"),
            (row(r#"[{"role": "user", "content": "q"}]"#), "line 1: no assistant message, so nothing to learn from"),
            (row("[]"), "line 1: 'messages' is empty"),
            (row("\"hi\""), "line 1: 'messages' must be a list of {\"role\", \"content\"} objects, found a string"),
            (row("[\"hi\"]"), "line 1: message 1: expected a {\"role\", \"content\"} object, found a string"),
        ];
        for (input, want) in cases {
            assert_eq!(err(parse_str("chat.jsonl", &input)), format!("chat.jsonl: {want}"), "{input}");
        }
    }

    #[test]
    fn empty_and_non_utf8_files() {
        for (name, body) in
            [("d.jsonl", ""), ("d.jsonl", "\n  \n"), ("d.txt", " \n"), ("d.csv", "text,label\n\n"), ("d.csv", "")]
        {
            assert_eq!(err(parse_str(name, body)), format!("{name}: contains no examples"), "{body:?}");
        }
        let e = err(parse("d.jsonl", b"{\"text\": \"a\"}\n{\"text\": \"b\xff\"}\n"));
        assert!(e.starts_with("d.jsonl: line 2: not valid UTF-8"), "{e}");
        let e = err(parse("d.csv", b"text,label\na,b\nc,d\n\xc3(,x"));
        assert!(e.starts_with("d.csv: line 4: not valid UTF-8"), "{e}");
    }

    #[test]
    fn unknown_extensions_are_sniffed_and_bom_is_skipped() {
        assert_eq!(parse_str("train.data", "\n  {\"text\": \"x\"}").unwrap().format, "jsonl-text");
        let ds = parse_str("README", "hello {world}").unwrap();
        assert_eq!((ds.format.as_str(), &ds.records), ("txt", &vec![text("hello {world}")]));
        assert_eq!(parse_str("d.JSONL", "\u{feff}{\"text\": \"x\"}").unwrap().records, vec![text("x")]);
        let ds = parse_str("d.csv", "\u{feff}text,label\na,b").unwrap();
        assert_eq!(ds.records, vec![labelled("a", "b")]);
    }

    // ---- validation: every problem, counts ----

    #[test]
    fn scan_goes_on_after_bad_rows_and_parse_stops_at_the_first() {
        let body = "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": }\n\n{\"text\": \"b\"}\n{\"text\": \"c\", \"label\": \"y\"}\n";
        let (ds, errors) = scan("d.jsonl", body.as_bytes(), 10);
        let ds = ds.unwrap();
        assert_eq!((ds.format.as_str(), ds.lines.as_slice()), ("jsonl-text-label", &[1, 5][..]));
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("d.jsonl: line 2: invalid JSON"), "{msgs:?}");
        assert_eq!(msgs[1], "d.jsonl: line 4: missing field 'label'");
        assert_eq!(err(parse_str("d.jsonl", body)), msgs[0]);
        // At most `max_problems`.
        assert_eq!(scan("d.jsonl", body.as_bytes(), 1).1.len(), 1);
        let csv = "text,label\na,x\nb\n,y\nc,\nd,y\n";
        let (ds, errors) = scan("t.csv", csv.as_bytes(), 10);
        assert_eq!(ds.unwrap().lines, [2, 6]);
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "t.csv: line 3: expected 2 fields as in the header, found 1",
                "t.csv: line 4: 'text' is empty",
                "t.csv: line 5: 'label' is empty"
            ]
        );
        assert_eq!(err(parse_str("t.csv", csv)), msgs[0]);
    }

    #[test]
    fn validate_counts_labels_tokens_and_lists_problems() {
        let csv = "text,label\nthe movie was good,pos\nthe film was bad,neg\nvery good,pos\nbad,\n";
        let v = validate("r.csv", csv.as_bytes(), None, &ValidateOptions::default());
        assert_eq!((v.format.as_deref(), v.task, v.rows, v.ok), (Some("csv-text-label"), Some(Task::SeqCls), 3, false));
        let labels: Vec<(&str, usize)> =
            v.labels.as_ref().unwrap().iter().map(|l| (l.label.as_str(), l.count)).collect();
        assert_eq!(labels, [("neg", 1), ("pos", 2)]);
        assert_eq!(v.tokens, None);
        assert_eq!(v.examples, None, "only when asked");
        // Asked for, the rows as parsed: quoted fields, labels trimmed, file order.
        let quoted = "text,label\n\"a, \"\"quoted\"\" one\", pos \nplain,neg\n";
        let v2 = validate("q.csv", quoted.as_bytes(), None, &ValidateOptions { examples: Some(true), ..Default::default() });
        let rows: Vec<(&str, &str)> = v2.examples.as_ref().unwrap().iter().map(|e| (e.text.as_str(), e.label.as_str())).collect();
        assert_eq!(rows, [("a, \"quoted\" one", "pos"), ("plain", "neg")]);
        assert_eq!(v2.conversations, None, "classification data has no conversations");
        // Chat data: the conversations as parsed, in file order (escapes read, roles kept).
        let chat = "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi \\\"you\\\"\"},{\"role\":\"assistant\",\"content\":\"Ahoy\"}]}\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"2\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n";
        let v3 = validate("c.jsonl", chat.as_bytes(), None, &ValidateOptions { examples: Some(true), ..Default::default() });
        let convs: Vec<Vec<(&str, &str)>> = v3.conversations.as_ref().unwrap().iter().map(|c| c.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect()).collect();
        assert_eq!(convs, [vec![("system", "Be brief."), ("user", "Hi \"you\""), ("assistant", "Ahoy")], vec![("user", "2"), ("assistant", "b")]]);
        assert_eq!((v3.examples, validate("c.jsonl", chat.as_bytes(), None, &ValidateOptions::default()).conversations), (None, None));
        assert_eq!(
            v.problems,
            [Problem {
                kind: "input",
                source: "r.csv".into(),
                line: Some(5),
                message: "r.csv: line 5: 'label' is empty".into()
            }]
        );
        // With a tokenizer: [CLS] text [SEP], truncation at seq_len.
        let tok = wordpiece(BERT_VOCAB);
        let opts = ValidateOptions { task: None, seq_len: Some(5), examples: None };
        let v = validate("r.csv", csv.replace("bad,\n", "").as_bytes(), Some(&tok), &opts);
        assert!(v.ok, "{:?}", v.problems);
        assert_eq!(v.tokens, Some(TokenCounts { total: 6 + 6 + 4, longest: 6, seq_len: 5, examples: 3 }));
        assert_eq!(v.warnings, ["2 of 3 examples were longer than --seq-len 5 tokens and were truncated"]);
        // The task must fit the rows; one label is not enough; no line for file-wide problems.
        let v = validate("r.csv", csv.as_bytes(), None, &ValidateOptions { task: Some(Task::CausalLm), seq_len: None, examples: None });
        assert!(
            v.problems[1].message.starts_with("r.csv: has class labels (csv-text-label); causal-lm"),
            "{:?}",
            v.problems
        );
        assert_eq!(v.problems[1].line, None);
        let v = validate("one.csv", b"text,label\na,x\n", None, &ValidateOptions::default());
        assert_eq!(
            v.problems[0].message,
            "one.csv: every row has the label 'x'; classification needs at least two labels"
        );
        assert_eq!(v.labels.unwrap()[0], LabelCount { label: "x".into(), count: 1 });
        // Unreadable files: no format, one problem.
        let v = validate("x.jsonl", &[b'{', 0xff], None, &ValidateOptions::default());
        assert_eq!((v.format, v.rows, v.problems[0].line), (None, 0, Some(1)));
        // Chat rows with a template: encoded as training does.
        let chat = json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]});
        let v = validate("c.jsonl", chat.to_string().as_bytes(), Some(&bpe()), &ValidateOptions::default());
        assert!(v.ok, "{:?}", v.problems);
        assert_eq!((v.task, v.tokens.as_ref().map(|t| t.examples)), (Some(Task::CausalLm), Some(1)));
    }

    // ---- parsing: CSV ----

    #[test]
    fn csv_quotes_newlines_and_column_order() {
        let body = "id,Label,text,notes\r\n\
                    1,pos,\"Hello, \"\"world\"\"\",x\r\n\
                    \r\n\
                    2,neg,\"multi\nline\r\ntext\" ,y\r\n\
                    3, pos ,plain \"quoted\" word,\"\"\n\
                    4,neg,last,z";
        let ds = parse_str("d.csv", body).unwrap();
        assert_eq!(ds.format, "csv-text-label");
        assert_eq!(
            ds.records,
            vec![
                labelled("Hello, \"world\"", "pos"),
                labelled("multi\nline\r\ntext", "neg"),
                labelled("plain \"quoted\" word", "pos"),
                labelled("last", "neg"),
            ]
        );
        // Each record's starting line, counting the lines inside quoted fields.
        assert_eq!(ds.lines, vec![2, 4, 7, 8]);
    }

    #[test]
    fn csv_errors_name_the_line() {
        assert_eq!(
            err(parse_str("d.csv", "text,label\n\"a\nb\",x\nc\n")),
            "d.csv: line 4: expected 2 fields as in the header, found 1"
        );
        assert_eq!(
            err(parse_str("d.csv", "text,label\na,b,c\n")),
            "d.csv: line 2: expected 2 fields as in the header, found 3"
        );
        assert_eq!(
            err(parse_str("d.csv", "sentence,label\na,b\n")),
            "d.csv: line 1: the header row must name a 'text' and a 'label' column (found 'sentence', 'label')"
        );
        assert_eq!(
            err(parse_str("d.csv", "text,label\na,b\n\"unclosed,x\n")),
            "d.csv: line 3: a quoted field is never closed"
        );
        assert!(err(parse_str("d.csv", "text,label\n\"a\"b,x\n"))
            .starts_with("d.csv: line 2: unexpected text after a closing quote"));
        assert_eq!(err(parse_str("d.csv", "text,label\na,b\n,c\n")), "d.csv: line 3: 'text' is empty");
        assert_eq!(err(parse_str("d.csv", "label,text\n,b\n")), "d.csv: line 2: 'label' is empty");
    }

    // ---- encoding: causal LM ----

    #[test]
    fn text_rows_learn_every_token_and_end_with_eos() {
        let tok = bpe();
        let eos = tok.token_id("<|endoftext|>").unwrap();
        let ds = parse_str("d.jsonl", "{\"text\": \"Hello world.\"}\n{\"text\": \"Done.<|endoftext|>\"}").unwrap();
        let enc = encode(&ds, &tok, &causal(64), None).unwrap();
        assert!(enc.warnings.is_empty());
        let mut want = tok.encode("Hello world.", true).unwrap();
        want.push(eos);
        assert_eq!(enc.examples[0].ids, want);
        assert_eq!(enc.examples[0].labels, to_labels(&want));
        assert_eq!(enc.examples[0].class, None);
        // Text that already ends with eos does not get a second one.
        let ids = &enc.examples[1].ids;
        assert_eq!(ids.iter().filter(|&&i| i == eos).count(), 1);
        assert_eq!(decode(&tok, ids), "Done.<|endoftext|>");
    }

    #[test]
    fn prompt_completion_learns_only_the_completion() {
        let tok = bpe();
        let (prompt, completion) = ("Question: what is 2+2?\nAnswer:", " 4, of course.");
        let row = json!({"prompt": prompt, "completion": completion}).to_string();
        let ds = parse_str("d.jsonl", &row).unwrap();
        let ex = &encode(&ds, &tok, &causal(128), None).unwrap().examples[0];
        let p = tok.encode(prompt, true).unwrap();
        let c = tok.encode(completion, false).unwrap();
        let eos = tok.token_id("<|endoftext|>").unwrap();
        assert_eq!(ex.ids, [p.clone(), c, vec![eos]].concat());
        assert!(ex.labels[..p.len()].iter().all(|&l| l == IGNORE_INDEX));
        let runs = labelled_runs(ex);
        assert_eq!(runs.len(), 1);
        assert_eq!(decode(&tok, &runs[0]), format!("{completion}<|endoftext|>"));
    }

    #[test]
    fn messages_learn_only_assistant_turns() {
        let tok = bpe();
        let msgs = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And Germany?\nThanks"},
            {"role": "assistant", "content": "Berlin is the capital.\nOf course!"},
        ]);
        let ds = parse_str("chat.jsonl", &json!({"messages": msgs}).to_string()).unwrap();
        let ex = &encode(&ds, &tok, &causal(512), None).unwrap().examples[0];
        let Record::Messages(m) = &ds.records[0] else { panic!() };
        let full = tok.apply_chat_template(m, false).unwrap();
        assert_eq!(ex.ids, tok.inner.encode(full.as_str(), false).unwrap().get_ids());
        let runs = labelled_runs(ex);
        let texts: Vec<String> = runs.iter().map(|r| decode(&tok, r)).collect();
        assert_eq!(texts, ["Paris.<|im_end|>", "Berlin is the capital.\nOf course!<|im_end|>"]);
        // The turn header just before each answer is not learned.
        let first = ex.labels.iter().position(|&l| l != IGNORE_INDEX).unwrap();
        assert!(decode(&tok, &ex.ids[..first]).ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn a_leading_assistant_turn_is_found_despite_the_default_system_prompt() {
        // render([], gen prompt) has no default system prompt, render([assistant]) does.
        let tok = bpe();
        let row =
            json!({"messages": [{"role": "assistant", "content": "Hi there."}, {"role": "user", "content": "Bye"}]});
        let ds = parse_str("chat.jsonl", &row.to_string()).unwrap();
        let ex = &encode(&ds, &tok, &causal(512), None).unwrap().examples[0];
        let runs: Vec<String> = labelled_runs(ex).iter().map(|r| decode(&tok, r)).collect();
        assert_eq!(runs, ["Hi there.<|im_end|>"]);
    }

    #[test]
    fn messages_need_a_usable_chat_template() {
        let row = json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]});
        let ds = parse_str("chat.jsonl", &row.to_string()).unwrap();
        let mut tok = bpe();
        tok.chat_template = None;
        let e = err(encode(&ds, &tok, &causal(64), None));
        assert!(
            e.starts_with("chat.jsonl: has chat messages but the tokenizer (tokenizer.json) has no chat template"),
            "{e}"
        );
        // A template that reorders turns cannot be cut into prefixes.
        tok.chat_template = Some("{% for m in messages|reverse %}{{ m.role }}: {{ m.content }}\n{% endfor %}".into());
        let e = err(encode(&ds, &tok, &causal(64), None));
        assert!(
            e.starts_with("chat.jsonl: line 1: chat template: it does not render a conversation as a prefix"),
            "{e}"
        );
        // Template errors (raise_exception) name the row.
        tok.chat_template = Some("{{ raise_exception('roles must alternate') }}".into());
        let e = err(encode(&ds, &tok, &causal(64), None));
        assert!(
            e.starts_with("chat.jsonl: line 1: chat template: could not render") && e.contains("roles must alternate"),
            "{e}"
        );
    }

    #[test]
    fn txt_is_cut_into_blocks() {
        let tok = bpe();
        let body = "The quick brown fox jumps over the lazy dog.\nIt was not amused.\n";
        let all = tok.encode(body, false).unwrap();
        assert!(all.len() > 12, "the test needs a few blocks");
        let ds = parse_str("book.txt", body).unwrap();
        let blocks = |seq_len| encode(&ds, &tok, &causal(seq_len), None).unwrap().examples;

        let ex = blocks(5);
        assert_eq!(
            ex.iter().flat_map(|e| e.ids.clone()).collect::<Vec<_>>(),
            all[..ex.len() * 5 - 5 + ex.last().unwrap().ids.len()]
        );
        assert!(ex[..ex.len() - 1].iter().all(|e| e.ids.len() == 5));
        assert!(ex.iter().all(|e| e.labels == to_labels(&e.ids)));
        // A last block of one token has nothing to learn: dropped; of two: kept.
        let n = all.len();
        let ex = blocks(n - 1);
        assert_eq!((ex.len(), ex[0].ids.as_slice()), (1, &all[..n - 1]));
        let ex = blocks(n - 2);
        assert_eq!((ex.len(), ex[1].ids.as_slice()), (2, &all[n - 2..]));
        // No bos/eos inside a block: the text is tokenised once, without specials.
        let ex = blocks(n + 10);
        assert_eq!(ex[0].ids, all);
    }

    #[test]
    fn overlong_rows_are_truncated_with_one_warning() {
        let tok = bpe();
        let long = "word ".repeat(40);
        let rows = [
            json!({"prompt": "Short:", "completion": long}),
            json!({"prompt": "Hi", "completion": " there"}),
            json!({"prompt": long, "completion": " lost"}),
            json!({"prompt": long.clone() + long.as_str(), "completion": " lost too"}),
        ];
        let body = rows.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n");
        let ds = parse_str("d.jsonl", &body).unwrap();
        let enc = encode(&ds, &tok, &causal(16), None).unwrap();
        assert_eq!(
            enc.warnings,
            [
                "3 of 4 examples were longer than --seq-len 16 tokens and were truncated",
                "2 of 4 examples were skipped: nothing to learn from within --seq-len 16 tokens",
            ]
        );
        assert_eq!(enc.examples.len(), 2);
        assert_eq!(enc.examples[0].ids.len(), 16);
        assert_eq!(enc.examples[0].ids[..], tok.encode(&format!("Short:{long}"), false).unwrap()[..16]);
        assert_eq!(enc.examples[0].labels.len(), 16);

        // A prompt of seq_len-1 tokens leaves one completion token: kept.
        let prompt_ids = tok.encode(&long, true).unwrap();
        let ds = parse_str("d.jsonl", &rows[2].to_string()).unwrap();
        let ex = &encode(&ds, &tok, &causal(prompt_ids.len() + 1), None).unwrap().examples[0];
        assert_eq!(ex.labels.iter().filter(|&&l| l != IGNORE_INDEX).count(), 1);

        // Nothing left at all is an error, not an empty epoch.
        let ds = parse_str("d.jsonl", &rows[3].to_string()).unwrap();
        let e = err(encode(&ds, &tok, &causal(16), None));
        assert!(e.contains("no example has anything to learn from within --seq-len 16 tokens"), "{e}");
    }

    // ---- encoding: classification ----

    #[test]
    fn classification_examples_keep_cls_and_sep() {
        let tok = wordpiece(BERT_VOCAB);
        let id = |t: &str| tok.token_id(t).unwrap();
        let ds = parse_str("train.csv", "text,label\nthe movie was very good !,pos\nthe film was bad,neg\n").unwrap();
        let map = label_map(&ds).unwrap();
        assert_eq!(map.names, ["neg", "pos"]);
        let opts = EncodeOptions { task: Task::SeqCls, seq_len: 5 };
        let enc = encode(&ds, &tok, &opts, Some(&map)).unwrap();
        assert_eq!(enc.warnings, ["2 of 2 examples were longer than --seq-len 5 tokens and were truncated"]);
        // Truncated: [CLS] the movie was [SEP].
        assert_eq!(enc.examples[0].ids, [id("[CLS]"), id("the"), id("movie"), id("was"), id("[SEP]")]);
        assert_eq!(enc.examples[0].class, Some(1));
        assert!(enc.examples[0].labels.is_empty());
        assert_eq!(enc.examples[1].ids, [id("[CLS]"), id("the"), id("film"), id("was"), id("[SEP]")]);
        let opts = EncodeOptions { task: Task::SeqCls, seq_len: 6 };
        let enc = encode(&ds, &tok, &opts, Some(&map)).unwrap();
        assert_eq!(enc.warnings, ["1 of 2 examples were longer than --seq-len 6 tokens and were truncated"]);
        assert_eq!(enc.examples[1].ids, [id("[CLS]"), id("the"), id("film"), id("was"), id("bad"), id("[SEP]")]);
        assert_eq!(enc.examples[1].class, Some(0));
    }

    #[test]
    fn unseen_labels_and_task_mismatches_are_errors() {
        let tok = wordpiece(BERT_VOCAB);
        let train = parse_str("train.csv", "text,label\ngood,pos\nbad,neg\n").unwrap();
        let map = label_map(&train).unwrap();
        let eval = parse_str("eval.csv", "text,label\ngood,pos\n\nbad,maybe\n").unwrap();
        let cls = EncodeOptions { task: Task::SeqCls, seq_len: 16 };
        assert_eq!(
            err(encode(&eval, &tok, &cls, Some(&map))),
            "eval.csv: line 4: label 'maybe' was not seen in training (known: neg, pos)"
        );
        assert_eq!(err(encode(&train, &tok, &cls, None)), "train.csv: classification needs a label map");
        let e = err(encode(&train, &tok, &causal(16), None));
        assert!(e.starts_with("train.csv: has class labels (csv-text-label); causal-lm training needs"), "{e}");
        let txt = parse_str("book.txt", "good film").unwrap();
        let e = err(encode(&txt, &tok, &cls, Some(&map)));
        assert!(e.starts_with("book.txt: has no labels (txt)"), "{e}");
        assert!(err(label_map(&txt)).starts_with("book.txt: has no labels (txt)"));
        assert!(err(encode(&train, &tok, &EncodeOptions { task: Task::SeqCls, seq_len: 1 }, Some(&map)))
            .contains("at least 2"));
    }

    #[test]
    fn label_maps() {
        let ds = |labels: &[&str]| Dataset {
            format: "jsonl-text-label".into(),
            records: labels.iter().map(|l| labelled("x", l)).collect(),
            source: "d.jsonl".into(),
            lines: (1..=labels.len()).collect(),
        };
        assert_eq!(label_map(&ds(&["10", "2", "1", "2", "-1"])).unwrap().names, ["-1", "1", "2", "10"]);
        assert_eq!(label_map(&ds(&["pos", "neutral", "neg", "pos"])).unwrap().names, ["neg", "neutral", "pos"]);
        assert_eq!(label_map(&ds(&["b", "10", "2"])).unwrap().names, ["10", "2", "b"]);
        assert_eq!(
            err(label_map(&ds(&["pos", "pos"]))),
            "d.jsonl: every row has the label 'pos'; classification needs at least two labels"
        );
        let map = LabelMap::from_names(["neg", "pos"]);
        assert_eq!((map.index("pos"), map.index("neg"), map.index("Pos")), (Some(1), Some(0), None));

        let config: Value =
            serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/tiny-bert/config.json")).unwrap()).unwrap();
        let map = LabelMap::from_config(&config).unwrap();
        assert_eq!(map.names, ["LABEL_0", "LABEL_1", "LABEL_2"]);
        assert!(map.is_placeholder());
        let map = LabelMap::from_config(&json!({"id2label": {"1": "positive", "0": "negative"}})).unwrap();
        assert_eq!(
            (map.names.as_slice(), map.is_placeholder()),
            (&["negative".to_string(), "positive".into()][..], false)
        );
        assert_eq!(LabelMap::from_config(&json!({"id2label": {"0": "a", "2": "b"}})), None);
        assert_eq!(LabelMap::from_config(&json!({"id2label": {}})), None);
        assert_eq!(LabelMap::from_config(&json!({"model_type": "bert"})), None);
    }

    // ---- batching, splitting, padding ----

    #[test]
    fn collate_pads_right_and_masks() {
        let a = Example { ids: vec![5, 6, 7], labels: vec![-100, 6, 7], class: None };
        let b = Example { ids: vec![1, 2, 3, 4, 9], labels: vec![1, 2, 3, 4, 9], class: None };
        let batch = collate(&[&a, &b], 0);
        assert_eq!(batch.ids, [vec![5, 6, 7, 0, 0], vec![1, 2, 3, 4, 9]]);
        assert_eq!(batch.attention_mask, [vec![1, 1, 1, 0, 0], vec![1; 5]]);
        assert_eq!(batch.labels, [vec![-100, 6, 7, -100, -100], vec![1, 2, 3, 4, 9]]);
        assert!(batch.classes.is_empty());
        assert_eq!(batch.tokens, 8);

        let c = Example { ids: vec![101, 7, 102], labels: vec![], class: Some(1) };
        let d = Example { ids: vec![101, 102], labels: vec![], class: Some(0) };
        let batch = collate(&[&c, &d], 3);
        assert_eq!(batch.ids, [vec![101, 7, 102], vec![101, 102, 3]]);
        assert_eq!(batch.attention_mask, [vec![1, 1, 1], vec![1, 1, 0]]);
        assert_eq!(batch.labels, [vec![-100; 3], vec![-100; 3]]);
        assert_eq!((batch.classes, batch.tokens), (vec![1, 0], 5));

        assert_eq!(collate(&[], 0).ids.len(), 0);
    }

    #[test]
    fn split_is_deterministic_and_complete() {
        let (train, eval) = split(10, 0.2, 7);
        assert_eq!((train.len(), eval.len()), (8, 2));
        let mut all = [train.clone(), eval.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(split(10, 0.2, 7), (train, eval));
        // Different seeds pick different eval sets (100 choose 10: never equal by chance).
        assert_ne!(split(100, 0.1, 1).1, split(100, 0.1, 2).1);
        // The eval set is not simply the last indices.
        assert_ne!(split(100, 0.1, 1).1, (90..100).collect::<Vec<_>>());
        assert_eq!(split(3, 0.5, 0).1.len(), 2); // round(1.5)
        assert_eq!(split(2, 0.1, 0).1.len(), 1); // at least one
        assert_eq!(split(5, 1.0, 0).1.len(), 4); // never all
        assert_eq!(split(1, 0.5, 0), (vec![0], vec![]));
        assert_eq!(split(5, 0.0, 0), (vec![0, 1, 2, 3, 4], vec![]));
        assert_eq!(split(5, f64::NAN, 0).1.len(), 0);
        assert_eq!(split(0, 0.5, 0), (vec![], vec![]));
    }

    #[test]
    fn pad_id_prefers_pad_tokens_then_eos() {
        assert_eq!(pad_id(&bpe()), 0); // "<pad>"
        assert_eq!(pad_id(&wordpiece(BERT_VOCAB)), 3); // "[PAD]"
        assert_eq!(pad_id(&wordpiece(&["[UNK]", "[CLS]", "[SEP]", "hi", "<|endoftext|>"])), 4);
        let mut tok = wordpiece(&["[UNK]", "[CLS]", "[SEP]", "hi", "</s>"]);
        assert_eq!(pad_id(&tok), 0);
        tok.eos_token = Some("</s>".into());
        assert_eq!(pad_id(&tok), 4);
    }
}
