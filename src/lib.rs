//! skewtail: catch load-balancer traffic skew from access logs.
#![warn(missing_docs)]
pub mod alert;
pub mod config;
pub mod detect;
pub mod parse;
pub mod source;
pub mod window;
