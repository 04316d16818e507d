//! The `vphone` command line.
fn main() {}
