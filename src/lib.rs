//! vphone: a software stand-in for a bank customer's phone.
