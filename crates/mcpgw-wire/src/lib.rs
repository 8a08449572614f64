//! The byte-level wire of mcpgw's stdio sessions, shared by the backends'
//! pipes and the stdio front: [`lines`] cuts what is read into whole lines,
//! and [`outbox`] batches what is written, pushing back when it is full.
//!
//! It knows bytes and lines only: nothing here parses JSON or knows MCP.

pub mod lines;
pub mod outbox;
