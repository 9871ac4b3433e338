//! Tokenizers (HF `tokenizer.json`, through the `tokenizers` crate) and chat
//! templates (Jinja, rendered with `minijinja` as transformers renders them).

use serde::Serialize;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A tokenizer with the special tokens and chat template that came with the model.
#[derive(Clone)]
pub struct TextTokenizer {
    pub inner: Tokenizer,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Where it came from, for messages.
    pub source: String,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({}, vocab {})", self.source, self.inner.get_vocab_size(true))
    }
}

/// Reads a special token that `tokenizer_config.json` gives either as a string
/// or as an `AddedToken` object.
fn token_string(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, plus the template and special tokens of an
    /// optional `tokenizer_config.json`.
    pub fn from_hf(tokenizer_json: &[u8], tokenizer_config: Option<&[u8]>) -> Result<Self> {
        let bad = |e: String| Error::format("tokenizer.json", format!("could not parse the tokenizer: {e}"));
        let json = serde_json::from_slice::<serde_json::Value>(tokenizer_json).map_err(|e| bad(e.to_string()))?;
        check_post_processor(json.get("post_processor"))?;
        // The tokenizers crate panics (instead of erroring) on some well-formed
        // JSON of the wrong shape, e.g. a malformed "decoder"; contain that.
        let parsed = std::panic::catch_unwind(|| Tokenizer::from_bytes(tokenizer_json))
            .map_err(|_| bad("the tokenizers library rejected its structure".into()))?;
        let mut inner = parsed.map_err(|e| bad(e.to_string()))?;
        // transformers ignores the padding and truncation saved in tokenizer.json
        // unless a call asks for them; batching code pads explicitly.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::format("tokenizer.json", format!("invalid truncation settings: {e}")))?;
        let mut tok = Self { inner, chat_template: None, bos_token: None, eos_token: None, source: "tokenizer.json".into() };
        if let Some(bytes) = tokenizer_config {
            let cfg: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| Error::format("tokenizer_config.json", format!("invalid JSON: {e}")))?;
            tok.bos_token = token_string(cfg.get("bos_token"));
            tok.eos_token = token_string(cfg.get("eos_token"));
            tok.chat_template = match cfg.get("chat_template") {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                // A list of named templates: transformers uses the one named "default".
                Some(serde_json::Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(|t| t.as_str())
                    .map(String::from),
                _ => None,
            };
        }
        Ok(tok)
    }

    /// Token ids of `text`, with special tokens added as transformers'
    /// `tokenizer(text)["input_ids"]` does when `add_special_tokens` is true.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::input(&self.source, format!("could not tokenize the text: {e}")))
    }

    /// Text of `ids`, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::input(&self.source, format!("could not decode tokens: {e}")))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Renders `messages` with the model's chat template.
    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::input(&self.source, "this model has no chat template; use a plain prompt"))?;
        render_chat_template(template, messages, add_generation_prompt, self.bos_token.as_deref(), self.eos_token.as_deref())
    }
}

/// Refuses a `TemplateProcessing` post-processor (alone or in a `Sequence`) whose
/// templates name a special token that its `special_tokens` lacks: the tokenizers
/// crate accepts that when deserialising and then panics while encoding (found by
/// fuzzing).
fn check_post_processor(p: Option<&serde_json::Value>) -> Result<()> {
    let Some(p) = p else { return Ok(()) };
    let bad = |msg: String| Error::format("tokenizer.json", format!("post_processor: {msg}"));
    // By shape, not by "type": the crate deserialises post-processors as an untagged
    // enum and accepts a misspelt type.
    for q in p.get("processors").and_then(|q| q.as_array()).map(Vec::as_slice).unwrap_or_default() {
        check_post_processor(Some(q))?;
    }
    let specials = p.get("special_tokens").and_then(|s| s.as_object());
    for which in ["single", "pair"] {
        let pieces = p.get(which).and_then(|v| v.as_array()).map(Vec::as_slice).unwrap_or_default();
        for id in pieces.iter().filter_map(|piece| piece.get("SpecialToken")?.get("id")?.as_str()) {
            if !specials.is_some_and(|s| s.contains_key(id)) {
                return Err(bad(format!("the {which} template uses special token '{id}', which is not in its special_tokens")));
            }
        }
    }
    Ok(())
}

/// Renders a Jinja chat template the way transformers does: Python-style
/// string methods, `raise_exception`, and trimmed blocks.
pub fn render_chat_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template)
        .map_err(|e| Error::format("chat template", format!("could not parse the template: {e}")))?;
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token.unwrap_or(""),
        eos_token => eos_token.unwrap_or(""),
    };
    env.get_template("chat")
        .and_then(|t| t.render(ctx))
        .map_err(|e| Error::format("chat template", format!("could not render: {e}")))
}
