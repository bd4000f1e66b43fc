//! Criterion benches of the mesh crates; see `benches/README.md` for how to run
//! them and the latest figures.
