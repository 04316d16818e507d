//! vphone key vault.
