//! SentencePiece vocabularies stored in a GGUF (`tokenizer.ggml.model == "llama"`), rebuilt as
//! the tokenizer transformers builds from the same metadata (integrations/gguf/
//! gguf_tokenizer_mapping.py): a BPE with byte fallback whose merges are recovered from the
//! vocabulary, since these files store none.
//!
//! Two builds, picked by architecture as transformers picks them:
//! - Gemma (`gemma_tokenizer` + `GemmaTokenizer`): whitespace-only tokens respelled with `▁`,
//!   merges ordered by the tokens' order in the file, spaces turned into `▁` with no prefix space;
//! - others (`LlamaTokenizer`, e.g. TinyLlama): merges ordered by the tokens' scores, and
//!   `Metaspace` (`▁` prefixed to the first word, as SentencePiece's dummy prefix).

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

/// The SentencePiece word-boundary mark.
const SPACE: char = '\u{2581}';

/// Which of transformers' SentencePiece builders a file gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpmFlavor {
    /// `gemma`, `gemma2`, `gemma3`.
    Gemma,
    /// Every other architecture (`LlamaTokenizer`).
    Llama,
}

impl SpmFlavor {
    /// The special tokens the transformers class registers by default (when in the vocabulary).
    pub fn default_specials(self) -> &'static [&'static str] {
        match self {
            Self::Gemma => &["<unk>", "<bos>", "<eos>", "<pad>", "<mask>"],
            Self::Llama => &["<unk>", "<s>", "</s>"],
        }
    }

    /// The flavour transformers uses for `general.architecture`.
    pub fn for_architecture(arch: &str) -> Self {
        if matches!(arch, "gemma" | "gemma2" | "gemma3") {
            Self::Gemma
        } else {
            Self::Llama
        }
    }
}

/// Python's `str.isspace`, which counts U+001C..U+001F that Rust's `is_whitespace` does not.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// transformers' `generate_merges(vocab, vocab_scores)`: every split of every token into two
/// vocabulary pieces, best score first; for one token, longer left pieces first, then longer
/// right pieces, then by the pieces' ids.
fn recover_merges(tokens: &[String], vocab: &HashMap<&str, u32>, scores: &[f64]) -> Merges {
    // A dict of token -> score keeps the first key position and the last value.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<(&str, f64)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match seen.get(t.as_str()) {
            Some(&k) => order[k].1 = scores[i],
            None => {
                seen.insert(t, order.len());
                order.push((t, scores[i]));
            }
        }
    }
    // (score, left, right), in the order generate_merges lists them before its final sort.
    let mut found: Vec<(f64, &str, &str)> = Vec::new();
    for (merge, score) in order {
        let mut local: Vec<(u32, u32, &str, &str)> = merge
            .char_indices()
            .skip(1)
            .map(|(b, _)| merge.split_at(b))
            .filter_map(|(l, r)| Some((*vocab.get(l)?, *vocab.get(r)?, l, r)))
            .collect();
        local.sort_by_key(|&(il, ir, _, _)| (il, ir));
        found.extend(local.into_iter().map(|(_, _, l, r)| (score, l, r)));
    }
    // Python's sort(reverse=True) is stable: equal keys keep their order (sort_by is stable too).
    let chars = |s: &str| s.chars().count();
    found.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(chars(b.1).cmp(&chars(a.1)))
            .then(chars(b.2).cmp(&chars(a.2)))
    });
    found.into_iter().map(|(_, l, r)| (l.to_string(), r.to_string())).collect()
}

/// The BPE, normaliser, pre-tokeniser and decoder transformers builds for a SentencePiece
/// vocabulary of `flavor` (special tokens and the BOS/EOS template are added by the caller).
/// `scores` are `tokenizer.ggml.scores` (unused by the Gemma flavour); `unk` is the unknown
/// Fails with a message when the vocabulary is unusable.
pub fn build(flavor: SpmFlavor, tokens: &[&str], scores: Option<&[f64]>) -> Result<Tokenizer, String> {
    let spelled: Vec<String> = match flavor {
        // Gemma files store runs of spaces as spaces; GemmaTokenizer looks them up as `▁`s.
        SpmFlavor::Gemma => tokens
            .iter()
            .map(|t| {
                if t.contains(' ') && t.chars().all(py_isspace) {
                    SPACE.to_string().repeat(t.chars().count())
                } else {
                    t.to_string()
                }
            })
            .collect(),
        SpmFlavor::Llama => tokens.iter().map(|t| t.to_string()).collect(),
    };
    let mut vocab_map: HashMap<&str, u32> = HashMap::with_capacity(spelled.len());
    for (id, t) in spelled.iter().enumerate() {
        vocab_map.insert(t, id as u32); // a later duplicate wins, as in a Python dict
    }
    let order_scores: Vec<f64> = match flavor {
        // Gemma's scores do not follow its merge order; the file order does.
        SpmFlavor::Gemma => (0..spelled.len()).map(|i| -(i as f64)).collect(),
        SpmFlavor::Llama => {
            let s = scores.ok_or("missing tokenizer.ggml.scores")?;
            if s.len() != spelled.len() {
                return Err(format!("tokenizer.ggml.scores has {} entries for {} tokens", s.len(), spelled.len()));
            }
            s.to_vec()
        }
    };
    let merges = recover_merges(&spelled, &vocab_map, &order_scores);
    let vocab: Vocab = vocab_map.iter().map(|(t, &i)| (t.to_string(), i)).collect();
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
    // GemmaTokenizer gives its BPE the unknown token "<unk>" (not the file's); LlamaTokenizer none.
    if flavor == SpmFlavor::Gemma && vocab_map.contains_key("<unk>") {
        builder = builder.unk_token("<unk>".into());
    }
    let bpe = builder.build().map_err(|e| format!("bad vocabulary: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    match flavor {
        SpmFlavor::Gemma => {
            tokenizer.with_normalizer(Some(Replace::new(" ", SPACE.to_string()).map_err(|e| e.to_string())?));
            // A no-op after the normaliser (no spaces are left), kept because transformers has it.
            let split = Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false)
                .map_err(|e| e.to_string())?;
            tokenizer.with_pre_tokenizer(Some(split));
            tokenizer.with_decoder(Some(DecoderSequence::new(vec![
                Replace::new(SPACE.to_string(), " ").map_err(|e| e.to_string())?.into(),
                ByteFallback::new().into(),
                Fuse::new().into(),
            ])));
        }
        SpmFlavor::Llama => {
            tokenizer.with_pre_tokenizer(Some(Metaspace::new(SPACE, PrependScheme::First, false)));
            tokenizer.with_decoder(Some(DecoderSequence::new(vec![
                Replace::new(SPACE.to_string(), " ").map_err(|e| e.to_string())?.into(),
                ByteFallback::new().into(),
                Fuse::new().into(),
                Strip::new(' ', 1, 0).into(),
            ])));
        }
    }
    Ok(tokenizer)
}
