//! What the benchmark targets share: generated mail, the in-process world, the scenarios and
//! how figures are reported.

#![allow(dead_code)]

pub mod e2e;
pub mod inprocess;
pub mod mailgen;
pub mod report;
pub mod world;
