"""Training: the shared pmap'd loop and the two stages (the VQ-VAE, then its prior).

Imported by the training scripts, tests and benchmarks only; inference (`runs`,
`codec`, `evaluation`, the public API) never imports it."""
