//! The demo pieces that `lingjing up` starts: the built-in demo origin server (module
//! [`origin`]), a small real HTTP site that the demo CDN service `www.demo.example` pulls
//! from and that the edge tests use as an origin.

pub mod origin;

pub use origin::{
    DEFAULT_LARGE_SIZE, DEFAULT_LISTEN, ORIGIN_NAME, OriginConfig, OriginHandle, fill_large,
    large_byte, serve,
};
