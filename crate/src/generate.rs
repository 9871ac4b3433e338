//! Text generation for causal LMs: a KV cache, greedy decoding and
//! temperature / top-p sampling. Logits are read with async reads only, so
//! the same loop runs in the browser.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::models::{KvCache, Model};

/// How to pick each next token.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// 0 means greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    pub seed: u64,
    /// Generation stops after any of these ids (the model's end-of-sequence tokens).
    pub stop_ids: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_new_tokens: 64, temperature: 0.0, top_p: 1.0, seed: 0, stop_ids: vec![] }
    }
}

/// Reads a float tensor to the host without blocking (required on WebGPU).
pub async fn read_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    let data = t.into_data_async().await.map_err(|e| Error::device(format!("could not read a tensor back: {e:?}")))?;
    data.try_into_vec::<f32>().map_err(|e| Error::device(format!("unexpected tensor data: {e:?}")))
}

/// Picks the next token from one row of logits.
pub fn sample(logits: &[f32], opts: &GenerateOptions, rng: &mut StdRng) -> u32 {
    if opts.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> =
        logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l - max) / opts.temperature).exp())).collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= total);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut keep = probs.len();
    if opts.top_p < 1.0 {
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p.1;
            if acc >= opts.top_p {
                keep = i + 1;
                break;
            }
        }
    }
    let kept = &probs[..keep];
    let mass: f32 = kept.iter().map(|p| p.1).sum();
    let mut r = rng.random::<f32>() * mass;
    for p in kept {
        r -= p.1;
        if r <= 0.0 {
            return p.0;
        }
    }
    kept.last().map_or(0, |p| p.0)
}

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Generates up to `max_new_tokens` after `prompt`, calling `on_token` with
/// each new id as soon as it is known (return `false` from it to stop).
pub async fn generate(model: &Model, prompt: &[u32], opts: &GenerateOptions, mut on_token: impl FnMut(u32) -> bool) -> Result<Vec<u32>> {
    generate_async(model, prompt, opts, |id| std::future::ready(on_token(id))).await
}

/// [`generate`] with a callback whose answer (continue?) is awaited before the
/// next token. The browser's worker uses it to yield to its event loop between
/// tokens, so an abort message can be seen even when the backend itself never
/// yields (the wasm CPU backend's reads complete at once).
pub async fn generate_async<F, Fut>(model: &Model, prompt: &[u32], opts: &GenerateOptions, mut on_token: F) -> Result<Vec<u32>>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !model.is_causal() {
        return Err(Error::input("generate", format!("{} is not a causal language model", model.info.architecture)));
    }
    if prompt.is_empty() {
        return Err(Error::input("generate", "the prompt is empty"));
    }
    let room = model.info.context_length.saturating_sub(prompt.len() + model.extra_positions());
    if room == 0 {
        return Err(Error::input(
            "generate",
            format!("the prompt has {} tokens; the model's context length is {}", prompt.len(), model.info.context_length),
        ));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut cache = KvCache::new(model.num_layers());
    let mut out = Vec::new();
    let mut step: Vec<u32> = prompt.to_vec();
    for _ in 0..opts.max_new_tokens.min(room) {
        let fwd = model.forward(&[step.clone()], None, None, Some(&mut cache))?;
        let logits = fwd.token_logits.expect("causal models return token logits");
        let [_, s, v] = logits.dims();
        let last = read_f32(logits.slice([0..1, s - 1..s, 0..v])).await?;
        let next = sample(&last, opts, &mut rng);
        out.push(next);
        if !on_token(next).await || opts.stop_ids.contains(&next) {
            break;
        }
        step = vec![next];
    }
    Ok(out)
}

/// The model's end-of-sequence ids: `eos_token_id` from the config plus the tokenizer's eos token.
pub fn stop_ids(m: &Model) -> Vec<u32> {
    let mut ids: Vec<u32> = match m.config.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect(),
        _ => vec![],
    };
    if let Some(t) = m.tokenizer.as_ref() {
        if let Some(id) = t.eos_token.as_deref().and_then(|e| t.token_id(e)) {
            ids.push(id);
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(temperature: f32, top_p: f32) -> GenerateOptions {
        GenerateOptions { temperature, top_p, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(sample(&[0.1, 3.0, 2.0], &opts(0.0, 1.0), &mut rng), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities at T=1: about 0.665, 0.245, 0.090. top_p 0.8 keeps the first two.
        let logits = [2.0f32, 1.0, 0.0];
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = [0usize; 3];
        for _ in 0..2000 {
            seen[sample(&logits, &opts(1.0, 0.8), &mut rng) as usize] += 1;
        }
        assert_eq!(seen[2], 0, "a token outside the nucleus was sampled");
        // Renormalised over the nucleus: 0.665 / 0.91 = 0.731.
        let share = seen[0] as f64 / 2000.0;
        assert!((share - 0.731).abs() < 0.04, "share of the top token {share}");
    }

    #[test]
    fn temperature_flattens_and_seed_repeats() {
        let logits = [2.0f32, 1.0, 0.0];
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50).map(|_| sample(&logits, &opts(5.0, 1.0), &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3), "the same seed must give the same tokens");
        let mut rng = StdRng::seed_from_u64(1);
        let low = (0..2000).filter(|_| sample(&logits, &opts(5.0, 1.0), &mut rng) == 2).count();
        // At T=5 the last token has probability about 0.27 (0.09 at T=1).
        assert!(low > 400, "high temperature should flatten the distribution ({low}/2000)");
    }
}
