//! Integration tests: a real Flow server on port 0 with a fresh database, over real HTTP.

mod helpers;

mod auth;
mod bad_input;
mod browser;
mod chat;
mod cli;
mod cluster;
mod connections;
mod contacts;
mod events_audit;
mod gateway;
mod isolation;
mod leads;
mod ops;
mod pagination;
mod queues;
mod resources;
mod schema;
mod security;
mod speech;
mod users;
mod voice;
