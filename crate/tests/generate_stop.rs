//! Stopping generation from the token callback: `generate_async` awaits the
//! callback's answer before the next token (the browser's worker yields to its
//! event loop there, so an abort can be seen) and stops on `false`.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::*;
use webpeft::device::Backend;
use webpeft::generate::{generate, generate_async, GenerateOptions};

/// Answers `value` after being polled once while pending (as a JS Promise would).
struct Later {
    value: bool,
    polled: bool,
}

impl Future for Later {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.polled {
            Poll::Ready(self.value)
        } else {
            self.polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[test]
fn a_false_answer_stops_generation_after_that_token() {
    let r = read_ref(&fixture("tiny-llama").join("reference.safetensors"));
    let m = load(&fixture("tiny-llama"), Backend::Cpu);
    let prompt = r["greedy_prompt_ids"].ids();
    let want = r["greedy_output_ids"].ids();
    assert!(want.len() >= 4, "the reference generates {} tokens", want.len());
    let opts = GenerateOptions { max_new_tokens: want.len(), ..Default::default() };

    // Awaited answers: true, true, false -> exactly three tokens, transformers' first three.
    let mut calls = 0;
    let got = pollster::block_on(generate_async(&m, &prompt, &opts, |_| {
        calls += 1;
        Later { value: calls < 3, polled: false }
    }))
    .unwrap();
    assert_eq!(calls, 3);
    assert_eq!(got, want[..3].to_vec());

    // Answering true throughout gives the whole greedy sequence, as `generate` does.
    let all = pollster::block_on(generate_async(&m, &prompt, &opts, |_| Later { value: true, polled: false })).unwrap();
    assert_eq!(all, want);
    let mut n = 0;
    let sync = pollster::block_on(generate(&m, &prompt, &opts, |_| {
        n += 1;
        n < 2
    }))
    .unwrap();
    assert_eq!(sync, want[..2].to_vec());
}
