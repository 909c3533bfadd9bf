//! One integration-test binary (one link step): the local AWS harness and everything that
//! runs against it or against the built CLI.

mod support;

mod apply;
mod cli;
mod corpus;
mod daemon;
mod demo;
mod emulator;
mod kill_points;
mod liveness;
mod package;
mod promotion;
mod reads;
mod shared_state;
