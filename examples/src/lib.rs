//! Runnable examples of the mesh crates. Run one with
//! `cargo run -p examples --example NAME`; the examples are in `examples/examples/`.
