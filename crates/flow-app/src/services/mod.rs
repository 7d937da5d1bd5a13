//! Business rules shared by every entry point: REST, the WebSocket gateway, voice and the
//! job processors.

pub mod activities;
pub mod contacts;
pub mod deals;
pub mod keys;
pub mod leads;
pub mod security;
pub mod tenants;
pub mod users;
pub mod voice;

pub use crate::work::{
    decode_cursor, double_option, encode_cursor, now, read, snapshot, Page, Record, Work,
};
