//! Test support: an isolated local AWS (deploy/local-aws) per test.
#![allow(dead_code)]

pub mod daemon;
pub mod env;
pub mod local_aws;
