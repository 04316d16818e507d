//! The `vphone phone ...` commands.
