//! vphone: a software stand-in for a bank customer's phone, and a strict sandbox of the
//! Solaris device-management API for it to talk to.

pub mod api;
pub mod client;
pub mod clock;
pub mod control;
pub mod demo;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod phone;
pub mod probe;
pub mod sandbox;
