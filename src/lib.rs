//! skewtail: catch load-balancer traffic skew from access logs.
#![warn(missing_docs)]
pub mod detect;
pub mod parse;
pub mod window;
