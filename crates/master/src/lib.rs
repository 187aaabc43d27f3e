//! One taskraft master node: openraft on sled, the peer and client RPC
//! servers, and the duties only the leader performs.

#![warn(clippy::all)]

pub mod store;
