//! Differentially private training (DP-SGD, as Opacus does it): per-example
//! gradients clipped to `max_grad_norm` over all trainable tensors together,
//! summed, Gaussian noise of std `noise_multiplier * max_grad_norm`, divided
//! by the expected batch size; Poisson-sampled batches; and the
//! [`accountant`] that turns the run into (epsilon, delta).

pub mod accountant;
