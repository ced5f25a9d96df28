//! The train crate's integration tests, in one binary: the optimizer against PyTorch, table
//! specs and aggregation, and the loop end to end.

mod optim;
mod table;
mod trainer;
