//! skewtail: catch load-balancer traffic skew from access logs.
#![warn(missing_docs)]
pub mod alert;
pub mod balancer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod detect;
pub mod evaluate;
pub mod lint;
pub mod live;
pub mod located;
pub mod parse;
pub mod pipeline;
pub mod rehearse;
pub mod report;
pub mod source;
pub mod synth;
pub mod text;
pub mod window;
